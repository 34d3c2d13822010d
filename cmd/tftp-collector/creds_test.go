package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
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
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/internal/grpcauth"
	"github.com/tftpgw/tftpgw/internal/proctest"
	"github.com/tftpgw/tftpgw/internal/testpki"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

var addrRE = regexp.MustCompile(`"?msg"?[=:]"collecting stats".*?"?addr"?[=:]"?([0-9.:\[\]]+)`)

// startCollector runs tftp-collector with args (and env) until the test
// ends, and returns it once it accepts streams.
func startCollector(t *testing.T, env []string, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, "tftp-collector", append([]string{"TFTP_COLLECTOR_AS_MAIN=1"}, env...), addrRE, args...)
}

// publish sends one event to addr as an edge would, and returns the
// call's status code.
func publish(t *testing.T, addr string, creds credentials.TransportCredentials, token, session string) codes.Code {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if token != "" {
		plaintext := creds.Info().SecurityProtocol == "insecure"
		tc, err := grpcauth.NewTokenCreds(token, "", addr, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tc))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := tftpgwv1.NewStatsSinkClient(conn).Publish(ctx)
	if err != nil {
		return status.Code(err)
	}
	stream.Send(&tftpgwv1.StatsEvent{Sequence: 1, Instance: session,
		Event: &tftpgwv1.StatsEvent_Session{Session: &tftpgwv1.SessionStats{SessionId: session, EdgeId: "e"}}})
	resp, err := stream.CloseAndRecv()
	if err == nil && resp.EventsReceived != 1 {
		t.Errorf("%s: events_received %d", session, resp.EventsReceived)
	}
	return status.Code(err)
}

// TestCollectorCredentials: with -tls-cert, -client-ca and -token-file the
// collector accepts an edge that has a certificate of the CA and the
// token, and refuses (writing nothing) one that lacks either, or speaks
// plaintext. With TLS only, or a token only on loopback, the same holds
// for what is required.
func TestCollectorCredentials(t *testing.T) {
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, "test CA"), testpki.NewCA(t, "test CA")
	caFile := ca.WriteCert(t, dir, "ca.pem")
	srvCert, srvKey := testpki.WriteKeyPair(t, dir, "server", ca.Issue(t, "leaf", true))
	good, bad := ca.Issue(t, "leaf", false), other.Issue(t, "leaf", false)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tlsWith := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs})
	}
	plain := insecure.NewCredentials()

	type call struct {
		name  string
		creds credentials.TransportCredentials
		token string
		want  codes.Code
	}
	for _, tt := range []struct {
		name  string
		args  []string
		calls []call
	}{
		{"mTLS and token", []string{"-tls-cert", srvCert, "-tls-key", srvKey, "-client-ca", caFile, "-token-file", token}, []call{
			{"accepted", tlsWith(good), "s3cret", codes.OK},
			{"wrong token", tlsWith(good), "nope", codes.Unauthenticated},
			{"no token", tlsWith(good), "", codes.Unauthenticated},
			{"client certificate of another CA", tlsWith(bad), "s3cret", codes.Unavailable},
			{"no client certificate", tlsWith(), "s3cret", codes.Unavailable},
			{"plaintext", plain, "s3cret", codes.Unavailable},
		}},
		{"TLS and token", []string{"-tls-cert", srvCert, "-tls-key", srvKey, "-token-file", token}, []call{
			{"accepted", tlsWith(), "s3cret", codes.OK},
			{"no token", tlsWith(), "", codes.Unauthenticated},
			{"plaintext", plain, "s3cret", codes.Unavailable},
		}},
		{"token on loopback", []string{"-token-file", token}, []call{
			{"accepted", plain, "s3cret", codes.OK},
			{"wrong token", plain, "nope", codes.Unauthenticated},
			{"no token", plain, "", codes.Unauthenticated},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.jsonl")
			p := startCollector(t, nil, append([]string{"-listen", "127.0.0.1:0", "-out", out}, tt.args...)...)
			for _, c := range tt.calls {
				if got := publish(t, p.Addr, c.creds, c.token, c.name); got != c.want {
					t.Errorf("%s: %v, want %v", c.name, got, c.want)
				}
			}
			p.Stop(t)
			b, _ := os.ReadFile(out)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], `"session_id":"accepted"`) {
				t.Errorf("output: want the accepted event only, got\n%s", b)
			}
		})
	}
}

// TestTokenRefusedInPlaintextOnNetwork: a token accepted in plaintext on
// an address other machines reach could be read on the way; the collector
// refuses to start so (exit status 2). On loopback, or with TLS, it starts.
func TestTokenRefusedInPlaintextOnNetwork(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	for _, listen := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		code, out := runMain(t, "-listen", listen, "-token-file", token)
		if code != 2 || !strings.Contains(out, "plaintext") {
			t.Errorf("-listen %s -token-file: exit %d, %q; want 2 and a message about plaintext", listen, code, out)
		}
	}
}

// TestDefaultListenIsLoopback is a regression test (issue 14 point 3): the
// collector listened on :7069, every interface, by default.
func TestDefaultListenIsLoopback(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:7069" || !grpcauth.LoopbackListen(c.listen) {
		t.Errorf("default -listen %q", c.listen)
	}
}

// TestGRPCLogIsJSON (issue 13 point 6): with -log-format json, gRPC's own
// log lines (here its INFO lines, at debug level) are JSON too.
func TestGRPCLogIsJSON(t *testing.T) {
	p := startCollector(t, []string{"GRPC_GO_LOG_SEVERITY_LEVEL=info", "GRPC_GO_LOG_VERBOSITY_LEVEL=2"},
		"-listen", "127.0.0.1:0", "-out", filepath.Join(t.TempDir(), "out"), "-log-format", "json", "-log-level", "debug")
	if got := publish(t, p.Addr, insecure.NewCredentials(), "", "s"); got != codes.OK {
		t.Fatalf("publish: %v", got)
	}
	p.Stop(t)
	grpcLines := 0
	for line := range strings.SplitSeq(strings.TrimSpace(p.LogText()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if m["system"] == "grpc" {
			grpcLines++
		}
	}
	if grpcLines == 0 {
		t.Errorf("no gRPC line:\n%s", p.LogText())
	}
}

// TestExposureWarningAdviceWorks (found in review): listening on an
// address other machines reach, without client certificates or a token,
// the collector warns, and doing what the warning says must give a
// command line it accepts and no warning. It said "set -client-ca or
// -token-file", but each of them alone is refused there without
// -tls-cert and -tls-key. (The addresses are only parsed: nothing listens
// on them.)
func TestExposureWarningAdviceWorks(t *testing.T) {
	files := map[string]string{"-tls-cert": "cert.pem", "-tls-key": "key.pem", "-client-ca": "ca.pem", "-token-file": "token"}
	for _, tt := range []struct {
		name string
		args []string
		warn bool
	}{
		{"wildcard, nothing", []string{"-listen", ":7069"}, true},
		{"IPv4 wildcard, nothing", []string{"-listen", "0.0.0.0:7069"}, true},
		{"IPv6 wildcard, nothing", []string{"-listen", "[::]:7069"}, true},
		{"an interface's address, nothing", []string{"-listen", "192.0.2.1:7069"}, true},
		{"TLS without authentication", []string{"-listen", ":7069", "-tls-cert", "cert.pem", "-tls-key", "key.pem"}, true},
		{"mutual TLS", []string{"-listen", ":7069", "-tls-cert", "cert.pem", "-tls-key", "key.pem", "-client-ca", "ca.pem"}, false},
		{"TLS and a token", []string{"-listen", ":7069", "-tls-cert", "cert.pem", "-tls-key", "key.pem", "-token-file", "token"}, false},
		{"loopback", []string{"-listen", "127.0.0.1:7069"}, false},
		{"loopback, a token", []string{"-listen", "[::1]:7069", "-token-file", "token"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			w := exposureWarning(c)
			if (w != "") != tt.warn {
				t.Fatalf("warning %q, want one: %v", w, tt.warn)
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
				args := append(append(append([]string{}, tt.args...), tls...), auth, files[auth])
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
