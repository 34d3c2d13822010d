package grpcauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestLoopbackTarget(t *testing.T) {
	for _, tt := range []struct {
		target string
		want   bool
	}{
		{"127.0.0.1:7069", true},
		{"[::1]:7069", true},
		{"localhost:7069", true},
		{"dns:///localhost:7069", true},
		{"unix:///run/collector.sock", true},
		{"127.0.0.1:1,127.0.0.2:2", true},
		{"127.0.0.1:1,192.0.2.1:2", false},
		{"192.0.2.1:7069", false},
		{"collector:7069", false},
		{"dns:///collector.example:7069", false},
		{"[::ffff:127.0.0.1]:1", true},
	} {
		if got := LoopbackTarget(tt.target); got != tt.want {
			t.Errorf("LoopbackTarget(%q) = %v, want %v", tt.target, got, tt.want)
		}
	}
}

func TestLoopbackListen(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:7069", true},
		{"[::1]:0", true},
		{"localhost:7069", true},
		{":7069", false},
		{"0.0.0.0:7069", false},
		{"[::]:7069", false},
		{"192.0.2.1:7069", false},
		{"nonsense", false},
	} {
		if got := LoopbackListen(tt.addr); got != tt.want {
			t.Errorf("LoopbackListen(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestTokenRefusedInPlaintextToRemoteTarget(t *testing.T) {
	if _, err := NewTokenCreds("s3cret", "", "192.0.2.1:7069", true); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("plaintext to a remote host: %v", err)
	}
	for _, target := range []string{"127.0.0.1:7069", "192.0.2.1:7069"} {
		plaintext := target == "127.0.0.1:7069"
		c, err := NewTokenCreds("s3cret", "", target, plaintext)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if c.RequireTransportSecurity() == plaintext {
			t.Errorf("%s: RequireTransportSecurity = %v", target, c.RequireTransportSecurity())
		}
	}
}

func TestTokenFileRereadWhenChanged(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("one\n"), 0o600)
	c, err := NewTokenCreds("", f, "127.0.0.1:1", true)
	if err != nil {
		t.Fatal(err)
	}
	get := func() string {
		md, err := c.GetRequestMetadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return md["authorization"]
	}
	if got := get(); got != "Bearer one" {
		t.Fatalf("got %q", got)
	}
	os.WriteFile(f, []byte("two-rotated\n"), 0o600)
	c.mu.Lock()
	c.checked = time.Time{} // skip the once-a-second check
	c.mu.Unlock()
	if got := get(); got != "Bearer two-rotated" {
		t.Fatalf("after rotation got %q", got)
	}
	os.Remove(f)
	c.mu.Lock()
	c.checked = time.Time{}
	c.mu.Unlock()
	if got := get(); got != "Bearer two-rotated" {
		t.Fatalf("file gone: got %q, want the last good token", got)
	}
	if _, err := NewTokenCreds("", filepath.Join(t.TempDir(), "missing"), "127.0.0.1:1", true); err == nil {
		t.Error("missing token file accepted")
	}
}

func TestBearerAuth(t *testing.T) {
	auth := BearerAuth("s3cret")
	for _, tt := range []struct {
		header string
		want   codes.Code
	}{
		{"Bearer s3cret", codes.OK},
		{"bearer s3cret", codes.OK},
		{"Bearer s3cre", codes.Unauthenticated},
		{"Basic s3cret", codes.Unauthenticated},
		{"", codes.Unauthenticated},
	} {
		ctx := context.Background()
		if tt.header != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tt.header))
		}
		_, err := auth(ctx)
		if got := status.Code(err); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.header, got, tt.want)
		}
	}
}
