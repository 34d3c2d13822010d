package rewrite_test

import (
	"context"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
)

// BenchmarkRewrite runs the first three rules of the package
// documentation (the deny rule aside) on three kinds of request; the
// if_exists rule's check is a map lookup.
func BenchmarkRewrite(b *testing.B) {
	rw := mustNew(b, exampleRules[:3])
	files := map[string]bool{"hosts/192.0.2.7/pxelinux.cfg/default": true}
	exists := func(p string) (bool, error) { return files[p], nil }
	for _, bc := range []struct{ name, path, client string }{
		{"boot prefix", "boot/x", "192.0.2.8"},
		{"case folded", "PXELINUX.CFG/DEFAULT", "192.0.2.8"},
		{"per-client hit", "pxelinux.cfg/default", "192.0.2.7"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := request(bc.path, bc.client)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rw.Rewrite(req, exists); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMiddleware is BenchmarkRewrite through the middleware, with an
// in-memory StatHandler as next (its contents allocate too).
func BenchmarkMiddleware(b *testing.B) {
	m := &memFS{files: map[string]string{
		"x":                                    "x",
		"pxelinux.cfg/default":                 "shared",
		"hosts/192.0.2.7/pxelinux.cfg/default": "own",
	}}
	h := gateway.Chain(statFS{m}, mustNew(b, exampleRules).Middleware())
	for _, bc := range []struct{ name, path, client string }{
		{"boot prefix", "boot/x", "192.0.2.8"},
		{"case folded", "PXELINUX.CFG/DEFAULT", "192.0.2.8"},
		{"per-client hit", "pxelinux.cfg/default", "192.0.2.7"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := request(bc.path, bc.client)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				req.Path = bc.path
				c, err := h.ServeTFTP(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				m.opens, m.stats, m.closes = m.opens[:0], m.stats[:0], m.closes[:0]
			}
		})
	}
}
