package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/testpki"
)

var testData = pattern(10_000)

// startSDKBackend runs the backend SDK serving testData for every path.
func startSDKBackend(t *testing.T, cfg sdk.Config) string {
	t.Helper()
	return startSDKBackendWith(t, gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.BytesContent(testData), nil
	}), cfg)
}

// startSDKBackendWith runs the backend SDK serving h on a loopback port
// and returns its address.
func startSDKBackendWith(t *testing.T, h gateway.Handler, cfg sdk.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	srv := sdk.NewServer(h, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String()
}

func mustGet(t *testing.T, h *Handler) {
	t.Helper()
	c, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readBlocks(c, 512)
	if err != nil || !bytes.Equal(got, testData) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "tftpgw test CA")
	other := testpki.NewCA(t, "someone else's CA")
	addr := startSDKBackend(t, sdk.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "backend", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	}})
	tests := []struct {
		name    string
		tls     *tls.Config
		wantLog string // the one error line; empty if the call succeeds
	}{
		{"good client certificate", &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Issue(t, "edge", false)}}, ""},
		{"no client certificate", &tls.Config{RootCAs: ca.Pool}, "refused this gateway's TLS client certificate"},
		{"client certificate from another CA", &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{other.Issue(t, "edge", false)}}, "refused this gateway's TLS client certificate"},
		{"backend certificate not trusted", &tls.Config{RootCAs: other.Pool, Certificates: []tls.Certificate{ca.Issue(t, "edge", false)}}, "TLS handshake failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, lb := testLogger(t)
			const budget = 500 * time.Millisecond
			h := dial(t, addr, Config{TLS: tt.tls, Logger: log, HeaderTimeout: budget})
			if tt.wantLog == "" {
				mustGet(t, h)
				if errs := lb.lines("level=ERROR"); len(errs) != 0 {
					t.Errorf("errors logged: %q", errs)
				}
				return
			}
			for range 3 {
				start := time.Now()
				_, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
				if te := gateway.ErrorFor(err); te.Code != 0 || te.Message != "backend timeout" {
					t.Errorf("%v -> %+v", err, te)
				}
				if d := time.Since(start); d > budget+time.Second {
					t.Errorf("refused after %s", d)
				}
			}
			errs := lb.lines("level=ERROR")
			if len(errs) != 1 || !bytes.Contains([]byte(errs[0]), []byte(tt.wantLog)) || !bytes.Contains([]byte(errs[0]), []byte(addr)) {
				t.Errorf("want one error line with %q and the backend address, got:\n%s", tt.wantLog, lb)
			}
			t.Logf("logged: %s", errs)
		})
	}
}

func TestBearerToken(t *testing.T) {
	addr := startSDKBackend(t, sdk.Config{Token: "right"})
	t.Run("right token", func(t *testing.T) {
		mustGet(t, dial(t, addr, Config{Token: "right"}))
	})
	t.Run("wrong token refused once in the log", func(t *testing.T) {
		log, lb := testLogger(t)
		h := dial(t, addr, Config{Token: "wrong", Logger: log})
		for range 3 {
			_, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
			if te := gateway.ErrorFor(err); *te != (gateway.Error{Code: 2, Message: "access violation"}) {
				t.Errorf("%v -> %+v", err, te)
			}
		}
		if errs := lb.lines("level=ERROR", "refused this gateway's credentials"); len(errs) != 1 {
			t.Errorf("want one error line, got:\n%s", lb)
		}
	})
	t.Run("no token", func(t *testing.T) {
		h := dial(t, addr, Config{})
		_, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f"))
		if te := gateway.ErrorFor(err); te.Code != 2 {
			t.Errorf("%v -> %+v", err, te)
		}
	})
	t.Run("token file rotated", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		log, lb := testLogger(t)
		h := dial(t, addr, Config{TokenFile: file, Logger: log})
		if _, err := h.ServeTFTP(ctxT(t, 10*time.Second), request("s", "f")); err == nil {
			t.Fatal("wrong token accepted")
		}
		if err := os.WriteFile(file, []byte("right\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // token files are checked once a second
		mustGet(t, h)
		if len(lb.lines("accepts this gateway's credentials again")) != 1 {
			t.Errorf("recovery not logged:\n%s", lb)
		}
	})
}

// alertConn is a connection whose backend has sent a TLS alert and closed:
// the write fails with a reset, and the alert waits to be read.
type alertConn struct {
	net.Conn
	reads int
}

func (c *alertConn) Write(p []byte) (int, error) {
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
}

func (c *alertConn) Read(p []byte) (int, error) {
	c.reads++
	return 0, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
}

func (c *alertConn) SetReadDeadline(time.Time) error { return nil }

// TestRefusedCertificateSeenOnWrite: a TLS 1.3 backend refusing the client
// certificate may make grpc's first write fail before its reader sees the
// alert (a CI run logged only "broken pipe"); the refusal is still reported.
func TestRefusedCertificateSeenOnWrite(t *testing.T) {
	log, lb := testLogger(t)
	w := &watcher{log: log, target: "backend:7070", state: map[string]string{}}
	raw := &alertConn{}
	c := &watchConn{Conn: raw, w: w, key: keyTLS + "10.0.0.1:7070"}
	if _, err := c.Write([]byte("PRI * HTTP/2.0")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write: %v", err)
	}
	// grpc closes the connection now, without reading it.
	if errs := lb.lines("level=ERROR", "refused this gateway's TLS client certificate", "certificate required", "10.0.0.1:7070"); len(errs) != 1 {
		t.Errorf("want one error line, got:\n%s", lb)
	}
	if _, err := c.Write([]byte("again")); err == nil || raw.reads != 1 {
		t.Errorf("second write: %v after %d reads; want the error and only the first failure to look", err, raw.reads)
	}
}
