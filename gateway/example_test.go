package gateway_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
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
