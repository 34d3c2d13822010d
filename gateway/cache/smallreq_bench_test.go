package cache_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// BenchmarkSmallRequests is tftpgw -root's chain (the edge cache over
// FileServer) answering the small requests of a boot storm over
// loopback, client included: a missing config name (ERROR 1) and a
// 300-byte config with blksize and tsize. Its allocs/op are the client's
// and the server's.
func BenchmarkSmallRequests(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxelinux.cfg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), make([]byte, 300), 0o644)
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { root.Close() })
	h := &cache.Handler{Next: gateway.FileServer(root)}
	srv := gatewaytest.NewServer(b, h, func(s *gateway.Server) { s.ClientRequestRate = -1 })
	addr := srv.Addr().String()
	ctx := context.Background()
	for _, bc := range []struct {
		name, path string
		opts       tftpclient.Options
		wantErr    bool
	}{
		{"missing", "pxelinux.cfg/01-52-54-00-00-00-01", tftpclient.Options{}, true},
		{"config", "pxelinux.cfg/default", tftpclient.Options{BlockSize: 1468, TSize: true}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, err := tftpclient.Get(ctx, addr, bc.path, io.Discard, bc.opts)
				var re *tftpclient.Error
				if bc.wantErr != errors.As(err, &re) {
					b.Fatal(err)
				}
				srv.NextStats(b)
			}
		})
	}
}
