package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient/tftpclienttest"
)

func TestParseScript(t *testing.T) {
	steps, err := parseScript(strings.NewReader(`
# a comment line
probe  pxelinux.0 blksize=1468     # trailing comment
GET    pxelinux.0 blksize=1468 windowsize=4 tsize
miss   cfg/01-{mac} cfg/{hex} cfg/{hex:2} timeout=3

get    vmlinuz size=100
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.String())
	}
	want := []string{
		"probe pxelinux.0 blksize=1468",
		"get pxelinux.0 blksize=1468 windowsize=4 tsize",
		"miss cfg/01-{mac} cfg/{hex} cfg/{hex:2} timeout=3",
		"get vmlinuz size=100",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%q\nwant\n%q", got, want)
	}
	if lines := []int{steps[0].line, steps[1].line, steps[2].line, steps[3].line}; !slices.Equal(lines, []int{3, 4, 5, 7}) {
		t.Errorf("lines %v", lines)
	}
	if !steps[0].opts.TSize || steps[0].size != -1 || steps[3].size != 100 || steps[3].opts.TSize {
		t.Errorf("probe always asks tsize, get only when told: %+v", steps)
	}

	for _, bad := range []string{
		"",
		"# only a comment",
		"fetch a",
		"get",
		"get a b",
		"probe a b",
		"miss a size=3",
		"get a blksize=4",
		"get a blksize=x",
		"get a windowsize=0",
		"get a timeout=256",
		"get a size=-1",
		"get a color=red",
		"get a{",
		"get {nope}",
		"miss {hex:9}",
		"miss {hex:0}",
	} {
		if _, err := parseScript(strings.NewReader(bad)); err == nil {
			t.Errorf("parseScript(%q) accepted", bad)
		}
	}
	if _, err := parseScript(strings.NewReader("get a\nget b blksize=1\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error does not name the line: %v", err)
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		name string
		m    machine
		want string
	}{
		{"plain", machine{n: 5}, "plain"},
		{"{n}/{mac}", machine{n: 0x10203}, "66051/52-54-00-01-02-03"},
		{"{ip} {hex} {hex:7} {hex:1}", machine{n: 4}, "10.0.0.5 0A000005 0A00000 0"},
		{"x{hex}y", machine{n: 1, ip: netip.MustParseAddr("192.168.10.5")}, "xC0A80A05y"},
		{"{ip}", machine{n: 1, ip: netip.MustParseAddr("127.1.0.2")}, "127.1.0.2"},
	}
	for _, tt := range tests {
		got, err := expand(tt.name, tt.m)
		if err != nil || got != tt.want {
			t.Errorf("expand(%q, %+v) = %q, %v; want %q", tt.name, tt.m, got, err, tt.want)
		}
	}
}

func TestSrcAddr(t *testing.T) {
	tests := []struct {
		prefix string
		i      int
		want   string
	}{
		{"127.1.0.0/16", 0, "127.1.0.1"},
		{"127.1.0.0/16", 254, "127.1.0.255"},
		{"127.1.0.0/16", 255, "127.1.1.0"},
		{"127.1.0.0/16", 65533, "127.1.255.254"},
		{"127.1.0.0/16", 65534, "127.1.0.1"}, // wraps, skipping .0.0 and .255.255
		{"127.0.0.9/32", 7, "127.0.0.9"},
		{"127.0.0.8/31", 3, "127.0.0.9"},
		{"::1/128", 3, "::1"},
		{"fd00::/64", 0, "fd00::1"},
		{"fd00::/64", 0x1_0000_0000, "fd00::1"}, // 2^32 - 2 addresses at most
	}
	for _, tt := range tests {
		cfg := &config{src: netip.MustParsePrefix(tt.prefix)}
		if got := cfg.srcAddr(tt.i); got.String() != tt.want {
			t.Errorf("srcAddr(%s, %d) = %v, want %s", tt.prefix, tt.i, got, tt.want)
		}
	}
	if a := (&config{}).srcAddr(3); a.IsValid() {
		t.Errorf("no -src: %v", a)
	}
}

func TestBootFlags(t *testing.T) {
	script := filepath.Join(t.TempDir(), "m.boot")
	if err := os.WriteFile(script, []byte("get a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"-boot", script, "-c", "3", "-src", "127.1.0.0/16", "-retries", "2"}, io.Discard, false)
	if err != nil || len(cfg.steps) != 1 || cfg.n != 3 || cfg.src.Bits() != 16 || cfg.opts.Retries != 2 {
		t.Fatalf("cfg = %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"-boot", script, "-file", "a"},
		{"-boot", script, "-blksize", "1468"},
		{"-boot", script, "-tsize=false"},
		{"-boot", script, "-probe"},
		{"-boot", filepath.Join(t.TempDir(), "missing")},
		{"-boot", script, "-src", "127.1.0.0"},
		{"-file", "a", "-probe", "-put"},
		{"-file", "a", "-expect-error", "1", "-put"},
		{"-file", "a", "-expect-error", "1", "-sha256", strings.Repeat("ab", 32)},
		{"-file", "a", "-expect-error", "70000"},
	} {
		if _, err := parseFlags(args, io.Discard, false); !errors.Is(err, errUsage) {
			t.Errorf("parseFlags(%q) = %v, want a usage error", args, err)
		}
	}
}

// TestBootAgainstGateway plays a small boot sequence against an in-process
// gateway: every machine boots, and a script whose miss finds a file, or
// whose get finds none, fails every machine at that step.
func TestBootAgainstGateway(t *testing.T) {
	files := gatewaytest.Files{
		"nbp":                      gatewaytest.Pattern(20_000),
		"cfg/default":              gatewaytest.Pattern(300),
		"kernel":                   gatewaytest.Pattern(50_000),
		"cfg/01-52-54-00-00-00-07": []byte("a file where machine 7 expects none"),
	}
	srv := gatewaytest.NewServer(t, files)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.boot", `
probe nbp blksize=1468
get   nbp blksize=1468 windowsize=4 tsize size=20000
miss  cfg/01-{mac} cfg/{hex} cfg/{hex:7}
get   cfg/default blksize=1468 tsize
get   kernel blksize=1468 tsize
`)
	boot := func(t *testing.T, script string, extra ...string) (bootSummary, int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := append([]string{"-boot", script, "-server", srv.Addr().String(), "-json", "-progress=false", "-retries", "1"}, extra...)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		code := mainCode(ctx, args, nil, &stdout, &stderr)
		var s bootSummary
		if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
			t.Fatalf("bad JSON %q (stderr %s): %v", stdout.String(), stderr.String(), err)
		}
		return s, code
	}

	t.Run("all boot", func(t *testing.T) {
		s, code := boot(t, good, "-c", "3", "-n", "5", "-src", "127.1.0.0/16")
		if code != 0 || s.Machines != 5 || s.Booted != 5 || s.Failed != 0 || s.Requests != 5*7 {
			t.Fatalf("code %d, summary %+v", code, s)
		}
		if want := int64(5 * (20_000 + 300 + 50_000)); s.Bytes != want {
			t.Errorf("bytes %d, want %d", s.Bytes, want)
		}
		if len(s.Steps) != 5 || s.Steps[2].Requests != 15 || s.Steps[2].OK != 15 || s.Steps[0].Line != 2 ||
			s.Steps[4].Latency.P50 <= 0 || s.BootTime.Max < s.BootTime.P50 || s.BootTime.P50 <= 0 {
			t.Errorf("steps %+v, boot %+v", s.Steps, s.BootTime)
		}
	})
	t.Run("text", func(t *testing.T) {
		var stdout bytes.Buffer
		code := mainCode(t.Context(), []string{"-boot", good, "-server", srv.Addr().String(), "-progress=false"}, nil, &stdout, io.Discard)
		out := stdout.String()
		if code != 0 || !strings.Contains(out, "machines    1 booted, 0 failed") || !strings.Contains(out, "miss cfg/01-{mac} cfg/{hex} cfg/{hex:7}") {
			t.Errorf("code %d, output:\n%s", code, out)
		}
	})
	t.Run("unexpected file", func(t *testing.T) {
		// Machine 7's MAC names a file that exists: it stops there.
		s, code := boot(t, good, "-n", "8", "-c", "2")
		if code != 1 || s.Booted != 7 || s.Failed != 1 ||
			s.Errors["line 4 (miss cfg/01-{mac}): expected ERROR 1, got the file (35 bytes)"] != 1 {
			t.Errorf("code %d, summary %+v", code, s)
		}
		if s.Steps[3].Requests != 7 || s.Steps[2].Failed != 1 {
			t.Errorf("steps after the failure ran: %+v", s.Steps)
		}
	})
	t.Run("wrong size", func(t *testing.T) {
		s, code := boot(t, write("size.boot", "get nbp size=5\nget kernel\n"), "-n", "2")
		if code != 1 || s.Failed != 2 || s.Steps[1].Requests != 0 || s.Errors["line 1 (get nbp): got 20000 bytes, want 5"] != 2 {
			t.Errorf("code %d, summary %+v", code, s)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		s, code := boot(t, write("missing.boot", "probe nope\n"), "-n", "1")
		if code != 1 || s.Failed != 1 || s.Errors["line 1 (probe nope): server error 1: file not found"] != 1 {
			t.Errorf("code %d, summary %+v", code, s)
		}
	})
}

// TestProbeAndExpectError runs the small-request modes of the load
// generator: a size probe counts when the OACK carries tsize, a request
// with -expect-error when the server answers with that ERROR.
func TestProbeAndExpectError(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"a": testData()}})
	noTSize := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"a": testData()}, NoOptions: true})
	tests := []struct {
		name     string
		server   string
		args     []string
		wantCode int
		ok, fail int
		errKey   string
	}{
		{"probe", srv.Addr(), []string{"-probe", "-file", "a", "-blksize", "1468", "-c", "2", "-n", "6"}, 0, 6, 0, ""},
		{"probe missing", srv.Addr(), []string{"-probe", "-file", "nope", "-n", "2"}, 1, 0, 2, "server error 1: File not found"},
		{"probe without tsize", noTSize.Addr(), []string{"-probe", "-file", "a", "-n", "1"}, 1, 0, 1, "tftpclient: server did not return tsize: server answered with DATA"},
		{"probe expecting ERROR 1", srv.Addr(), []string{"-probe", "-file", "nope", "-expect-error", "1", "-n", "2"}, 0, 2, 0, ""},
		{"expect error", srv.Addr(), []string{"-file", "x,y", "-expect-error", "1", "-c", "2", "-n", "4", "-src", "127.3.0.0/24"}, 0, 4, 0, ""},
		{"expect error, got file", srv.Addr(), []string{"-file", "a", "-expect-error", "1", "-n", "1"}, 1, 0, 1, "expected ERROR 1, got the file (100000 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-server", tt.server, "-json", "-progress=false", "-retries", "1"}, tt.args...)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code := mainCode(ctx, args, nil, &stdout, &stderr)
			var s summary
			if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
				t.Fatalf("bad JSON %q (stderr %s): %v", stdout.String(), stderr.String(), err)
			}
			if code != tt.wantCode || s.OK != tt.ok || s.Failed != tt.fail {
				t.Errorf("code %d ok %d failed %d, want %d %d %d: %s", code, s.OK, s.Failed, tt.wantCode, tt.ok, tt.fail, stdout.String())
			}
			if tt.errKey != "" && s.Errors[tt.errKey] != tt.fail {
				t.Errorf("errors = %v, want %q", s.Errors, tt.errKey)
			}
			if s.OK > 0 && (s.Latency.P50 <= 0 || s.TTFB.P50 <= 0) {
				t.Errorf("no latency: %+v", s)
			}
		})
	}
}
