package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// A handler serving generated content: a per-machine PXELINUX config that
// names the client's address, as fbtftp's README example does.
func ExampleHandlerFunc() {
	h := gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
		if !strings.HasPrefix(r.Path, "pxelinux.cfg/") {
			return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "no such config"}
		}
		cfg := fmt.Sprintf("DEFAULT linux\nLABEL linux\n  KERNEL vmlinuz\n  APPEND ip=%s\n", r.RemoteAddr.Addr())
		return gateway.BytesContent([]byte(cfg)), nil
	})
	srv := &gateway.Server{Addr: "127.0.0.1:6969", Handler: h}
	_ = srv // srv.ListenAndServe() serves it
}

// A write handler that takes switch configuration backups (and nothing
// else) into memory, keyed by the client's address: the client's last
// block is acknowledged once Commit has kept the bytes. Package upload
// stores uploads in a directory, atomically.
func ExampleWriteHandlerFunc() {
	var mu sync.Mutex
	backups := map[netip.Addr][]byte{}
	h := gateway.WriteHandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Upload, error) {
		if r.Path != "running-config" {
			return nil, gateway.ErrUploadRefused // ERROR 2, before the client sends anything
		}
		return &backup{commit: func(b []byte) {
			mu.Lock()
			defer mu.Unlock()
			backups[r.RemoteAddr.Addr()] = b
		}}, nil
	})
	// No Handler: read requests get ERROR 1.
	srv := &gateway.Server{Addr: "127.0.0.1:6969", WriteHandler: h}
	_ = srv // srv.ListenAndServe() serves it
}

// backup is an Upload kept in memory until Commit.
type backup struct {
	buf    bytes.Buffer
	commit func([]byte)
}

func (b *backup) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > 1<<20 {
		return 0, gateway.ErrUploadTooLarge // ERROR 3
	}
	return b.buf.Write(p)
}
func (b *backup) Commit() error { b.commit(b.buf.Bytes()); return nil }
func (b *backup) Abort()        {}

// Serve a directory, and report every session.
func ExampleServer() {
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	srv := &gateway.Server{
		Addr:          ":69",
		Handler:       gateway.FileServer(root),
		MaxBlockSize:  1468, // Ethernet MTU 1500 minus IP and UDP headers
		MaxWindowSize: 16,
		SessionStatsFunc: func(s gateway.SessionStats) {
			slog.Info("boot file", "client", s.RemoteAddr, "path", s.Path, "outcome", s.Outcome, "bytes", s.BytesAcked)
		},
	}
	log.Fatal(srv.ListenAndServe())
}

// Drain running sessions on SIGINT, for at most ten seconds.
func ExampleServer_Shutdown() {
	srv := &gateway.Server{Addr: ":69", Handler: gateway.FileServer(mustRoot("/srv/tftp"))}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("sessions ended early: %v", err)
		}
	}()
	if err := srv.ListenAndServe(); err != gateway.ErrServerClosed {
		log.Fatal(err)
	}
}

func mustRoot(dir string) *os.Root {
	r, err := os.OpenRoot(dir)
	if err != nil {
		log.Fatal(err)
	}
	return r
}

// Middleware wraps a handler; Chain's first middleware is the outermost.
// This one logs every request before the file server answers it.
func ExampleChain() {
	logRequests := func(next gateway.Handler) gateway.Handler {
		return gateway.HandlerFunc(func(ctx context.Context, r *gateway.Request) (gateway.Content, error) {
			slog.Info("read request", "client", r.RemoteAddr, "path", r.Path)
			return next.ServeTFTP(ctx, r)
		})
	}
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	srv := &gateway.Server{Handler: gateway.Chain(gateway.FileServer(root), logRequests)}
	log.Fatal(srv.ListenAndServe())
}

// An admission hook drops requests from outside the boot network without a
// word and refuses write requests with a chosen error, before the server
// spends a socket or a goroutine on them.
func ExampleServer_admit() {
	boot := netip.MustParsePrefix("10.20.0.0/16")
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	srv := &gateway.Server{
		Handler: gateway.FileServer(root),
		Admit: func(a gateway.Arrival) gateway.Admission {
			switch {
			case !boot.Contains(a.Client.Addr()):
				return gateway.Admission{Action: gateway.AdmitDrop}
			case a.Write:
				return gateway.Admission{Action: gateway.AdmitRefuse,
					Error: &gateway.Error{Code: gateway.ErrAccessViolation, Message: "read-only"}}
			}
			return gateway.Admission{}
		},
	}
	log.Fatal(srv.ListenAndServe())
}

// Serve the same files over TFTP and HTTP from one Server: iPXE fetches
// its script over TFTP and the kernel over HTTP, and a handler can tell
// them apart by Request.Protocol.
func ExampleServer_ServeHTTP() {
	files := gateway.FileServer(mustRoot("/srv/tftp"))
	srv := &gateway.Server{
		Addr: ":69",
		Handler: gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
			if req.Path == "boot.ipxe" {
				script := fmt.Sprintf("#!ipxe\nkernel http://%s:8080/vmlinuz\nboot\n", req.LocalAddr.Addr())
				return gateway.BytesContent([]byte(script)), nil
			}
			return files.ServeTFTP(ctx, req)
		}),
	}
	hs := &http.Server{Addr: ":8080", Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { log.Fatal(hs.ListenAndServe()) }()
	log.Fatal(srv.ListenAndServe())
}
