package remote

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	sdk "github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

var testData = pattern(10_000)

// startSDKBackend runs the backend SDK serving testData for every path.
func startSDKBackend(t *testing.T, cfg sdk.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	srv := sdk.NewServer(gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		return gateway.BytesContent(testData), nil
	}), cfg)
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
	ca := newCA(t, "tftpgw test CA")
	other := newCA(t, "someone else's CA")
	addr := startSDKBackend(t, sdk.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "backend", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	}})
	tests := []struct {
		name    string
		tls     *tls.Config
		wantLog string // the one error line; empty if the call succeeds
	}{
		{"good client certificate", &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "edge", false)}}, ""},
		{"no client certificate", &tls.Config{RootCAs: ca.pool}, "refused this gateway's TLS client certificate"},
		{"client certificate from another CA", &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{other.issue(t, "edge", false)}}, "refused this gateway's TLS client certificate"},
		{"backend certificate not trusted", &tls.Config{RootCAs: other.pool, Certificates: []tls.Certificate{ca.issue(t, "edge", false)}}, "TLS handshake failed"},
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
