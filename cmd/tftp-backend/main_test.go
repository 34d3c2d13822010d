package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// startBackend runs the command with args (plus -listen 127.0.0.1:0) until
// the test ends and returns its address.
func startBackend(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), io.Discard, func(a net.Addr) { addrc <- a.String() }, nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return a
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("backend did not start")
	}
	return ""
}

func connect(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fetch reads path and returns its data.
func fetch(ctx context.Context, conn *grpc.ClientConn, path string) (string, error) {
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, &tftpgwv1.ReadRequest{
		Path: path, RawPath: path, Mode: "octet",
		Client:       &tftpgwv1.Address{Ip: "10.1.2.3", Port: 2000},
		LocalAddress: &tftpgwv1.Address{Ip: "10.1.2.1", Port: 69},
	})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return b.String(), err
		}
		b.Write(msg.GetData())
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestRootAndTemplates(t *testing.T) {
	root, tmpl, outside := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, "pxelinux.0"), "binary")
	writeFile(t, filepath.Join(root, "grub.cfg-01-aa-bb-cc-dd-ee-ff"), "shadowed by the template")
	writeFile(t, filepath.Join(outside, "secret"), "secret")
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tmpl, "grub.cfg-01-{mac}.tmpl"), "set mac={{.MAC}} ip={{.ClientIP}}\n")
	writeFile(t, filepath.Join(tmpl, "pxelinux.cfg", "01-{mac}.tmpl"), "APPEND ip={{.ClientIP}}:{{.ClientPort}} server={{.LocalIP}} mac={{.MAC}}\n")
	conn := connect(t, startBackend(t, "-root", root, "-templates", tmpl), nil)

	for _, tc := range []struct {
		path, want string
		code       codes.Code
	}{
		{path: "grub.cfg-01-aa-bb-cc-dd-ee-ff", want: "set mac=aa:bb:cc:dd:ee:ff ip=10.1.2.3\n"},
		{path: "pxelinux.cfg/01-00-50-56-AB-CD-EF", want: "APPEND ip=10.1.2.3:2000 server=10.1.2.1 mac=00:50:56:ab:cd:ef\n"},
		{path: "pxelinux.0", want: "binary"},
		{path: "missing", code: codes.NotFound},
		{path: "../" + filepath.Base(outside) + "/secret", code: codes.InvalidArgument},
		{path: outside + "/secret", code: codes.InvalidArgument},
	} {
		got, err := fetch(t.Context(), conn, tc.path)
		if status.Code(err) != tc.code || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.path, got, err, tc.want, tc.code)
		}
	}
	// A symbolic link out of the root is refused (os.Root).
	if got, err := fetch(t.Context(), conn, "link"); err == nil || got != "" {
		t.Errorf("link: served %q", got)
	}
}

// pki is a test CA with server and client certificates, as PEM files.
type pki struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	client                    tls.Certificate // signed by the CA
	stranger                  tls.Certificate // signed by another CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := makeCert(t, "test CA", nil, nil, true)
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = writeFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})))
	srv, srvKey := makeCert(t, "server", ca, caKey, false)
	p.certFile = writeFile(t, filepath.Join(dir, "server.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Raw})))
	der, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = writeFile(t, filepath.Join(dir, "server.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	cl, clKey := makeCert(t, "client", ca, caKey, false)
	p.client = tls.Certificate{Certificate: [][]byte{cl.Raw}, PrivateKey: clKey}
	other, otherKey := makeCert(t, "other CA", nil, nil, true)
	st, stKey := makeCert(t, "stranger", other, otherKey, false)
	p.stranger = tls.Certificate{Certificate: [][]byte{st.Raw}, PrivateKey: stKey}
	return p
}

// makeCert makes a certificate for 127.0.0.1 signed by parent (self-signed
// if parent is nil).
func makeCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), "data")
	addr := startBackend(t, "-root", dir, "-tls-cert", p.certFile, "-tls-key", p.keyFile, "-client-ca", p.caFile)

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"client certificate from the CA", []tls.Certificate{p.client}, true},
		{"no client certificate", nil, false},
		{"client certificate from another CA", []tls.Certificate{p.stranger}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: tc.certs, MinVersion: tls.VersionTLS12})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			got, err := fetch(ctx, connect(t, addr, creds), "f")
			if tc.ok && (err != nil || got != "data") {
				t.Errorf("got %q, %v", got, err)
			}
			if !tc.ok && (err == nil || status.Code(err) == codes.OK) {
				t.Errorf("accepted: got %q", got)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := fetch(ctx, connect(t, addr, nil), "f"); err == nil {
			t.Errorf("plaintext accepted")
		}
	})
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), "data")
	tokenFile := writeFile(t, filepath.Join(t.TempDir(), "token"), "s3cret\n")
	conn := connect(t, startBackend(t, "-root", dir, "-token-file", tokenFile, "-log-format", "json"), nil)

	if _, err := fetch(t.Context(), conn, "f"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without token: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer wrong")
	if _, err := fetch(bad, conn, "f"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v", err)
	}
	good := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer s3cret")
	if got, err := fetch(good, conn, "f"); err != nil || got != "data" {
		t.Errorf("with token: %q, %v", got, err)
	}
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without token: %v, %v", resp, err)
	}
}

func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"-root", dir, "extra"},
		{"-root", dir, "-tls-cert", "x"},
		{"-root", dir, "-client-ca", "x"},
		{"-root", dir, "-log-format", "xml"},
		{"-root", filepath.Join(dir, "missing")},
		{"-http-upstream", "ftp://example/"},
		{"-root", dir, "-token-file", filepath.Join(dir, "missing")},
	} {
		var stderr bytes.Buffer
		if err := run(t.Context(), append([]string{"-listen", "127.0.0.1:0"}, args...), &stderr, nil, nil); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestMaxAge: -root files carry the -max-age so that edges may cache them,
// and stay seekable for resumes.
func TestMaxAge(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := withMaxAge(gateway.FileServer(root), 7*time.Second)
	c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ic, ok := c.(gateway.InfoContent)
	if !ok || ic.Info().MaxAge != 7*time.Second || ic.Info().ETag == "" {
		t.Fatalf("info %+v", ic)
	}
	if _, err := c.(io.Seeker).Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(c); string(b) != "rnel" {
		t.Errorf("after seek: %q", b)
	}
	if _, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "missing"}); err == nil {
		t.Error("missing file served")
	}
}

// TestTokenRefusedInPlaintextOnNetwork (issue 14 point 3, found in
// review): a token accepted in plaintext on a non-loopback address can be
// read by anyone on the path, and then every file with it. tftp-backend
// refuses it, as tftp-collector does; on loopback, or with TLS, it is
// accepted.
func TestTokenRefusedInPlaintextOnNetwork(t *testing.T) {
	dir := t.TempDir()
	tok := writeFile(t, filepath.Join(dir, "token"), "s3cret\n")
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := parseFlags([]string{"-root", dir, "-listen", listen, "-token-file", tok}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "refusing to accept a token in plaintext") {
			t.Errorf("-listen %s -token-file: %v, want a refusal", listen, err)
		}
	}
	for _, args := range [][]string{
		{"-listen", "127.0.0.1:0"},
		{"-listen", "[::1]:0"},
		{"-listen", "0.0.0.0:0", "-tls-cert", "c", "-tls-key", "k"},
	} {
		if _, err := parseFlags(append([]string{"-root", dir, "-token-file", tok}, args...), io.Discard); err != nil {
			t.Errorf("%q: %v, want accepted", args, err)
		}
	}
}

// TestHelpExitsZero (found in review): -h and -help print the usage and
// exit 0, as tftpgw -h does; they exited 2, as for a bad flag. A bad flag
// still exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "-listen address"},
		{[]string{"-help"}, 0, "-listen address"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"-root", t.TempDir(), "extra"}, 2, "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out := runMain(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}

// TestExposureWarningAdviceWorks (found in review): listening on an
// address other machines reach, without client certificates or a token,
// tftp-backend said nothing, although anyone there can read every file
// (tftp-collector warns). It warns now, and doing what the warning says
// must give a command line it accepts and no warning. (The addresses are
// only parsed: nothing listens on them.)
func TestExposureWarningAdviceWorks(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"-tls-cert": "cert.pem", "-tls-key": "key.pem", "-client-ca": "ca.pem", "-token-file": "token"}
	for _, tt := range []struct {
		name string
		args []string
		warn string // in the warning; "" for none
	}{
		{"wildcard, nothing", []string{"-listen", ":7070"}, "read every file it serves:"},
		{"IPv4 wildcard, nothing", []string{"-listen", "0.0.0.0:7070"}, "read every file"},
		{"IPv6 wildcard, nothing", []string{"-listen", "[::]:7070"}, "read every file"},
		{"an interface's address, nothing", []string{"-listen", "192.0.2.1:7070"}, "read every file"},
		{"uploads", []string{"-listen", ":7070", "-upload-dir", dir}, "and upload files"},
		{"TLS without authentication", []string{"-listen", ":7070", "-tls-cert", "cert.pem", "-tls-key", "key.pem"}, "read every file"},
		{"mutual TLS", []string{"-listen", ":7070", "-tls-cert", "cert.pem", "-tls-key", "key.pem", "-client-ca", "ca.pem"}, ""},
		{"TLS and a token", []string{"-listen", ":7070", "-tls-cert", "cert.pem", "-tls-key", "key.pem", "-token-file", "token"}, ""},
		{"loopback", []string{"-listen", "127.0.0.1:7070"}, ""},
		{"loopback, a token", []string{"-listen", "[::1]:7070", "-token-file", "token"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := append([]string{"-root", dir}, tt.args...)
			c, err := parseFlags(base, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			w := exposureWarning(c)
			if tt.warn == "" && w != "" || !strings.Contains(w, tt.warn) {
				t.Fatalf("warning %q, want one with %q", w, tt.warn)
			}
			if w == "" {
				return
			}
			named := func(flag string) bool {
				return regexp.MustCompile(`(^|[\s,])` + regexp.QuoteMeta(flag) + `\b`).MatchString(w)
			}
			var tls []string
			for _, f := range []string{"-tls-cert", "-tls-key"} {
				if named(f) {
					tls = append(tls, f, files[f])
				}
			}
			followed := 0
			for _, auth := range []string{"-client-ca", "-token-file"} {
				if !named(auth) {
					continue
				}
				followed++
				args := append(append(append([]string{}, base...), tls...), auth, files[auth])
				c, err := parseFlags(args, io.Discard)
				if err != nil {
					t.Errorf("warning %q: following it with %q: %v", w, args, err)
					continue
				}
				if w2 := exposureWarning(c); w2 != "" {
					t.Errorf("warning %q: following it with %q still warns %q", w, args, w2)
				}
			}
			if followed == 0 {
				t.Errorf("warning %q names neither -client-ca nor -token-file", w)
			}
		})
	}
}
