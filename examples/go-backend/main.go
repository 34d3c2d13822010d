// Command go-backend is a tftpgw content service on the backend SDK that
// fits on one screen: boot.ipxe is an iPXE script made for the client that
// asks (it names the client's address), every other path a file of -root.
//
//	go run ./examples/go-backend -root examples/tftproot -listen 127.0.0.1:50051
//	tftpgw -listen :69 -backend 127.0.0.1:50051
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
)

// script is the iPXE script of one client: %[1]s is its address.
const script = "#!ipxe\necho Booting %[1]s through tftpgw (go-backend)\n" +
	"chain --autofree tftp://${next-server}/hosts/%[1]s.ipxe || shell\n"

// generated is content made for one request. Its ETag is the digest of its
// bytes and its MaxAge negative (sent as a max_age of 0): the edge cache
// asks again on every request, whatever its -cache-max-age, and never
// serves one client's script to another.
type generated struct {
	gateway.Content
	info gateway.ContentInfo
}

func (g generated) Info() gateway.ContentInfo { return g.info }

func main() {
	listen := flag.String("listen", "127.0.0.1:50051", "gRPC `address` to serve on (port 0: any free port)")
	dir := flag.String("root", ".", "`directory` served for every path but boot.ipxe")
	flag.Parse()
	root, err := os.OpenRoot(*dir)
	check("open -root", err)
	files := gateway.FileServer(root)
	h := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		if r.Path != "boot.ipxe" {
			return files.ServeTFTP(ctx, r)
		}
		if !r.RemoteAddr.IsValid() {
			return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "no client address"}
		}
		b := []byte(fmt.Sprintf(script, r.RemoteAddr.Addr().Unmap().WithZone("")))
		sum := sha256.Sum256(b)
		return generated{gateway.BytesContent(b), gateway.ContentInfo{ETag: fmt.Sprintf("ipxe-%x", sum[:16]), MaxAge: -1, SHA256: sum}}, nil
	})
	ln, err := net.Listen("tcp", *listen)
	check("listen", err)
	srv := backend.NewServer(h, backend.Config{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { // on SIGTERM, running calls get 10 s
		<-ctx.Done()
		time.AfterFunc(10*time.Second, srv.Stop)
		srv.GracefulStop()
	}()
	slog.Info("go-backend serving", "addr", ln.Addr().String(), "root", *dir)
	check("serve", srv.Serve(ln))
}

func check(what string, err error) {
	if err != nil {
		slog.Error(what, "err", err)
		os.Exit(1)
	}
}
