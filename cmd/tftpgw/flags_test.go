package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// Out-of-range flag values must stop tftpgw with a clear error and a
// non-zero exit. Each of these is accepted and tftpgw starts serving with a
// configuration other than the one asked for: a zero becomes the default
// (-max-blksize 0 grants 65464, -max-windowsize 0 grants 64, -max-sessions 0
// allows 4096, -timeout 0 waits 1 s), a negative duration is replaced or
// ignored, values outside the documented range are clamped without a word,
// and a TLS flag meant for -backend is ignored when there is no -backend.
func TestBadFlagValuesAreRejected(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range [][]string{
		{"-max-blksize", "0"},
		{"-max-blksize", "4"},
		{"-max-blksize", "100000"},
		{"-max-windowsize", "0"},
		{"-max-windowsize", "-1"},
		{"-timeout", "0"},
		{"-timeout", "-1s"},
		{"-min-timeout", "-1s"},
		{"-retries", "-3"},
		{"-max-sessions", "0"},
		{"-drain-timeout", "-1s"},
		{"-cache-max-age", "-1s"},
		{"-backend-tls"},
		{"-client-rate", "NaN"},
		{"-stats-interval", "0"},
		{"-max-window-memory-per-client", "-2"},
		{"-backend", "127.0.0.1:1"}, // with -root: both
		{"-port-range", "50000-50003", "-single-port"},
		{"-port-range", "0-10"},
		{"-port-range", "50999-50000"},
	} {
		t.Run(strings.Join(bad, "="), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			args := append([]string{"-listen", "127.0.0.1:0", "-root", dir}, bad...)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			if ctx.Err() != nil {
				t.Errorf("tftpgw %s: accepted; still serving after 3 s (killed). Log:\n%s", strings.Join(bad, " "), firstLines(out, 3))
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("tftpgw %s: %v, want exit status 2. Log:\n%s", strings.Join(bad, " "), err, firstLines(out, 3))
			}
		})
	}
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestEdgeIDWithoutBackend is a regression test (found in review): -edge-id
// names the edge to stats sinks too, so it must be accepted with -root.
func TestEdgeIDWithoutBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, binPath, "-listen", "127.0.0.1:0", "-root", t.TempDir(), "-edge-id", "edge-a").CombinedOutput()
	if ctx.Err() == nil || !strings.Contains(string(out), "tftpgw serving") {
		t.Errorf("tftpgw -root -edge-id did not serve. Log:\n%s", firstLines(out, 3))
	}
}

// TestParseFlags: each flag lands in its field of options, with the
// defaults of README.md's "tftpgw flags" when not given; no process.
func TestParseFlags(t *testing.T) {
	defaults := options{
		Serving: servingOptions{
			Listen: ":69", Root: "/srv/tftp",
			Timeout: time.Second, MinTimeout: 20 * time.Millisecond, Retries: 5,
			MaxBlksize: 65464, MaxWindowsize: 64, DrainTimeout: 10 * time.Second,
		},
		Limits: limitOptions{
			MaxSessions: 4096, MaxSessionsPerClient: 256, ClientRate: 200,
			MaxWindowMemory: 1 << 30, MaxWindowMemoryPerClient: 0,
		},
		Backend: backendOptions{
			HeaderTimeout: 2 * time.Second, IdleTimeout: 10 * time.Second,
			Resumes: 3, ResumeTimeout: 5 * time.Second,
		},
		Stats:  statsOptions{Interval: time.Minute},
		Cache:  cacheOptions{Size: 512 << 20},
		Log:    logOptions{Format: "text", Level: "info"},
		Upload: uploadOptions{MaxSize: defaultUploadMaxSize, Path: "{path}"},
		HTTP:   httpOptions{Timeout: 30 * time.Second, MaxConns: 1024},
		EdgeID: hostname(),
	}
	for _, tc := range []struct {
		name string
		args []string // after -root /srv/tftp unless they give -backend
		want func(o *options)
	}{
		{"defaults", nil, func(*options) {}},
		{"serving", []string{"-listen", "127.0.0.1:6969", "-single-port", "-timeout", "2s", "-min-timeout", "5ms",
			"-retries", "0", "-max-blksize", "1468", "-max-windowsize", "16", "-drain-timeout", "0"},
			func(o *options) {
				o.Serving = servingOptions{Listen: "127.0.0.1:6969", Root: "/srv/tftp", SinglePort: true,
					Timeout: 2 * time.Second, MinTimeout: 5 * time.Millisecond, Retries: 0,
					MaxBlksize: 1468, MaxWindowsize: 16, DrainTimeout: 0}
			}},
		{"port range", []string{"-port-range", "50000-50999"},
			func(o *options) { o.Serving.PortRange = gateway.PortRange{First: 50000, Last: 50999} }},
		{"one port", []string{"-port-range", "50000"},
			func(o *options) { o.Serving.PortRange = gateway.PortRange{First: 50000, Last: 50000} }},
		{"no port range", []string{"-port-range", ""}, func(*options) {}},
		{"limits", []string{"-max-sessions", "-1", "-max-sessions-per-client", "8", "-client-rate", "0.5",
			"-max-window-memory", "1048576", "-max-window-memory-per-client", "-1"},
			func(o *options) {
				o.Limits = limitOptions{MaxSessions: -1, MaxSessionsPerClient: 8, ClientRate: 0.5,
					MaxWindowMemory: 1 << 20, MaxWindowMemoryPerClient: -1}
			}},
		{"backend", []string{"-backend", "dns:///content:50051", "-backend-header-timeout", "3s", "-backend-idle-timeout", "4s",
			"-backend-resumes", "0", "-backend-resume-timeout", "6s", "-backend-tls", "-backend-ca", "ca.pem",
			"-backend-cert", "c.pem", "-backend-key", "k.pem", "-backend-server-name", "content", "-backend-token-file", "token"},
			func(o *options) {
				o.Serving.Root = ""
				o.Backend = backendOptions{
					clientOptions: clientOptions{Target: "dns:///content:50051", TLS: true, CA: "ca.pem",
						Cert: "c.pem", Key: "k.pem", ServerName: "content", TokenFile: "token"},
					HeaderTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second, Resumes: 0, ResumeTimeout: 6 * time.Second,
				}
			}},
		{"stats", []string{"-stats-sink", "collector:7069", "-stats-sink-tls", "-stats-sink-ca", "ca.pem",
			"-stats-sink-cert", "c.pem", "-stats-sink-key", "k.pem", "-stats-sink-server-name", "collector",
			"-stats-sink-token-file", "token", "-stats-interval", "10s", "-metrics", ":9069"},
			func(o *options) {
				o.Stats = statsOptions{
					Sink: clientOptions{Target: "collector:7069", TLS: true, CA: "ca.pem",
						Cert: "c.pem", Key: "k.pem", ServerName: "collector", TokenFile: "token"},
					Interval: 10 * time.Second, Metrics: ":9069",
				}
			}},
		{"window memory with suffixes", []string{"-max-window-memory", "1GiB", "-max-window-memory-per-client", "64MiB"},
			func(o *options) { o.Limits.MaxWindowMemory, o.Limits.MaxWindowMemoryPerClient = 1<<30, 64<<20 }},
		{"cache", []string{"-cache-size", "64MiB", "-cache-max-age", "1m"},
			func(o *options) { o.Cache = cacheOptions{Size: 64 << 20, MaxAge: time.Minute} }},
		{"cache off", []string{"-cache-size", "0"}, func(o *options) { o.Cache.Size = 0 }},
		{"log in capitals", []string{"-log-format", "JSON", "-log-level", "WARN"},
			func(o *options) { o.Log = logOptions{Format: "json", Level: "WARN"} }},
		{"log, user and edge", []string{"-log-format", "json", "-log-level", "debug", "-user", "nobody", "-edge-id", "edge-a"},
			func(o *options) {
				o.Log = logOptions{Format: "json", Level: "debug"}
				o.User, o.EdgeID = "nobody", "edge-a"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !slices.Contains(args, "-backend") {
				args = append([]string{"-root", "/srv/tftp"}, args...)
			}
			var stderr bytes.Buffer
			got, err := parseFlags(args, &stderr)
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", args, err)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: %q", stderr.String())
			}
			want := defaults
			tc.want(&want)
			for name := range got.set {
				if !slices.Contains(args, "-"+name) {
					t.Errorf("-%s marked as given", name)
				}
			}
			got.set, got.args = nil, nil
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("parseFlags(%q) =\n%+v\nwant\n%+v", args, *got, want)
			}
		})
	}
}

// TestOptionsServer: the options map onto gateway.Server's fields, the
// flags' zeros translated where the field's zero means the default.
func TestOptionsServer(t *testing.T) {
	o, err := parseFlags([]string{"-root", "/srv", "-listen", ":6969", "-retries", "0", "-max-blksize", "1468",
		"-max-windowsize", "16", "-timeout", "2s", "-min-timeout", "5ms", "-single-port", "-stats-interval", "5s",
		"-max-sessions", "10", "-max-sessions-per-client", "2", "-client-rate", "-1",
		"-max-window-memory", "4096", "-max-window-memory-per-client", "1024"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// -port-range and -single-port exclude each other: a second set of
	// options for the range.
	ranged, err := parseFlags([]string{"-root", "/srv", "-listen", ":6969", "-port-range", "50000-50003"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := o.server()
	want := &gateway.Server{Addr: ":6969", Retries: -1, MaxBlockSize: 1468, MaxWindowSize: 16,
		Timeout: 2 * time.Second, MinTimeout: 5 * time.Millisecond, SinglePort: true, StatsInterval: 5 * time.Second,
		MaxSessions: 10, MaxSessionsPerClient: 2, ClientRequestRate: -1, MaxWindowMemory: 4096, MaxWindowMemoryPerClient: 1024}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("server() = %+v\nwant %+v", got, want)
	}
	if got := ranged.server().PortRange; got != (gateway.PortRange{First: 50000, Last: 50003}) {
		t.Errorf("server().PortRange = %v, want 50000-50003", got)
	}
}

// TestParseFlagsRefuses: a bad value is refused with an error, also
// written to stderr, that names the flag. The same rules as
// TestBadFlagValuesAreRejected, without a process.
func TestParseFlagsRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string // after -root /srv/tftp
		want string
	}{
		{[]string{"-max-blksize", "0"}, "-max-blksize 0: want 8 to 65464 (RFC 2348)"},
		{[]string{"-max-blksize", "4"}, "-max-blksize 4: want 8 to 65464 (RFC 2348)"},
		{[]string{"-max-blksize", "100000"}, "-max-blksize 100000: want 8 to 65464 (RFC 2348)"},
		{[]string{"-max-blksize", "x"}, `invalid value "x" for flag -max-blksize`},
		{[]string{"-max-windowsize", "0"}, "-max-windowsize 0: want 1 to 32767 (RFC 7440;"},
		{[]string{"-max-windowsize", "-1"}, "-max-windowsize -1: want 1 to 32767"},
		{[]string{"-max-windowsize", "32768"}, "-max-windowsize 32768: want 1 to 32767"},
		{[]string{"-timeout", "0"}, "-timeout 0s"},
		{[]string{"-timeout", "-1s"}, "-timeout -1s"},
		{[]string{"-min-timeout", "-1s"}, "-min-timeout -1s"},
		{[]string{"-retries", "-3"}, "-retries -3"},
		{[]string{"-max-sessions", "0"}, "-max-sessions 0"},
		{[]string{"-max-sessions-per-client", "-2"}, "-max-sessions-per-client -2"},
		{[]string{"-client-rate", "NaN"}, "-client-rate NaN"},
		{[]string{"-client-rate", "+Inf"}, "-client-rate +Inf"},
		{[]string{"-max-window-memory", "0"}, "-max-window-memory 0"},
		{[]string{"-max-window-memory-per-client", "-2"}, "-max-window-memory-per-client -2"},
		{[]string{"-drain-timeout", "-1s"}, "-drain-timeout -1s"},
		{[]string{"-cache-max-age", "-1s"}, "-cache-max-age -1s"},
		{[]string{"-http-cert", "c.pem", "-http-key", "k.pem"}, "-http-cert needs -http"},
		{[]string{"-http", ":8080", "-http-cert", "c.pem"}, "-http-cert and -http-key go together"},
		{[]string{"-http", ":8080", "-http-timeout", "0"}, "-http-timeout 0s: must be positive"},
		{[]string{"-http", ":8080", "-http-max-conns", "0"}, "-http-max-conns 0"},
		{[]string{"-http", "8080"}, `-http "8080"`},
		{[]string{"-http", "127.0.0.1"}, `-http "127.0.0.1": missing port in address; want HOST:PORT`},
		{[]string{"-http", "127.0.0.1:70000"}, `-http "127.0.0.1:70000": port 70000: want 0 to 65535`},
		{[]string{"-listen", "10.0.0.5"}, `-listen "10.0.0.5": missing port in address; want HOST:PORT, such as :69`},
		{[]string{"-listen", "127.0.0.1:99999"}, `-listen "127.0.0.1:99999": port 99999: want 0 to 65535`},
		{[]string{"-listen", ":27109x"}, `-listen ":27109x": port "27109x": want a number`},
		{[]string{"-listen", "127.0.0.1:6969,[::1]"}, `-listen "[::1]": missing port in address`},
		{[]string{"-metrics", "127.0.0.1"}, `-metrics "127.0.0.1": missing port in address; want HOST:PORT`},
		{[]string{"-metrics", ":65536"}, `-metrics ":65536": port 65536: want 0 to 65535`},
		{[]string{"-root", "", "-backend", "10.0.0.5:7070,10.0.0.6"}, `-backend "10.0.0.5:7070,10.0.0.6": "10.0.0.6": missing port in address`},
		{[]string{"-root", "", "-backend", "content:99999"}, `-backend "content:99999": port 99999: want 0 to 65535`},
		{[]string{"-root", "", "-backend", "dns:///content:99999"}, `-backend "dns:///content:99999": port 99999`},
		{[]string{"-stats-sink", "collector:7069x"}, `-stats-sink "collector:7069x": port "7069x"`},
		{[]string{"-root", "", "-backend", "192.0.2.1:7070", "-backend-token-file", "t"},
			`-backend-token-file: refusing to send a token in plaintext to -backend "192.0.2.1:7070": give -backend-tls (or -backend-ca), or a loopback target`},
		{[]string{"-root", "", "-backend", "127.0.0.1:7070,192.0.2.1:7070", "-backend-token-file", "t"}, `-backend-token-file: refusing to send a token in plaintext`},
		{[]string{"-stats-sink", "collector:7069", "-stats-sink-token-file", "t"},
			`-stats-sink-token-file: refusing to send a token in plaintext to -stats-sink "collector:7069"`},
		{[]string{"-cache-size", "-1"}, `-cache-size -1: want a number of bytes such as 512MiB, or 0 to turn the cache off`},
		{[]string{"-cache-size", "1.5GiB"}, `invalid value "1.5GiB" for flag -cache-size: want a number of bytes such as 1073741824 or 1GiB (suffixes KiB, MiB, GiB)`},
		{[]string{"-upload-max-size", "-1"}, `-upload-max-size -1: want a number of bytes such as 16MiB, or 0 for no limit`},
		{[]string{"-max-window-memory", "1TB"}, `invalid value "1TB" for flag -max-window-memory: want a number of bytes such as 1073741824 or 1GiB (suffixes KiB, MiB, GiB)`},
		{[]string{"-max-window-memory", "-2MiB"}, `-max-window-memory -2097152: want a number of bytes such as 1GiB, or -1 for no limit`},
		{[]string{"-stats-interval", "0"}, "-stats-interval 0s"},
		{[]string{"-backend", "x:1", "-backend-header-timeout", "0"}, "-backend-header-timeout 0s"},
		{[]string{"-backend", "x:1", "-backend-idle-timeout", "0"}, "-backend-idle-timeout 0s"},
		{[]string{"-backend", "x:1", "-backend-resume-timeout", "-1s"}, "-backend-resume-timeout -1s"},
		{[]string{"-backend", "x:1", "-backend-resumes", "-1"}, "-backend-resumes -1"},
		{[]string{"-backend", "x:1"}, "give -root or -backend, not both"},
		{[]string{"-root", ""}, "nothing to serve"},
		{[]string{"-backend-tls"}, "-backend-tls needs -backend"},
		{[]string{"-backend-token-file", "t"}, "-backend-token-file needs -backend"},
		{[]string{"-backend-resumes", "3"}, "-backend-resumes needs -backend"},
		{[]string{"-stats-sink-ca", "ca.pem"}, "-stats-sink-ca needs -stats-sink"},
		{[]string{"-log-format", "xml"}, "-log-format"},
		{[]string{"-log-level", "loud"}, `-log-level "loud": want debug, info, warn or error`},
		{[]string{"-log-level", "verbose"}, `-log-level "verbose": want debug, info, warn or error`},
		{[]string{"-log-format", "Yaml"}, `-log-format: want text or json, not "Yaml"`},
		{[]string{"-port-range", "50000-50003", "-single-port"}, "-port-range 50000-50003 with -single-port"},
		{[]string{"-port-range", "60-70"}, "-port-range 60-70 holds port 69 of -listen :69"},
		{[]string{"-listen", "[::1]:6969", "-port-range", "6969"}, "-port-range 6969 holds port 6969 of -listen [::1]:6969"},
		{[]string{"-port-range", "50999-50000"}, `invalid value "50999-50000" for flag -port-range: port range "50999-50000": first port 50999 is above last port 50000`},
		{[]string{"-port-range", "0-10"}, `invalid value "0-10" for flag -port-range: port range "0-10": "0" is not a port`},
		{[]string{"-port-range", "50000:50999"}, `invalid value "50000:50999" for flag -port-range`},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"serve"}, `unexpected arguments: ["serve"]`},
	} {
		t.Run(strings.Join(tc.args, "="), func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseFlags(append([]string{"-root", "/srv/tftp"}, tc.args...), &stderr)
			if err == nil {
				t.Fatalf("accepted: %+v", o)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
}

var updateUsage = flag.Bool("update-usage", false, "rewrite testdata/usage.txt with the flags' usage")

// TestUsage: every flag keeps its name, default and usage text (scripts
// and operators depend on them); testdata/usage.txt is the -h output.
func TestUsage(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	if !strings.HasPrefix(stderr.String(), "Usage of ") {
		t.Errorf("-h printed %q", firstLines(stderr.Bytes(), 1))
	}

	var got bytes.Buffer
	fs := (&options{}).flagSet(&got)
	fs.Lookup("edge-id").DefValue = "HOSTNAME" // the default is this machine's name
	fs.PrintDefaults()
	if *updateUsage {
		if err := os.WriteFile("testdata/usage.txt", got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/usage.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("usage changed; if on purpose, update testdata/usage.txt (and README.md):\n%s", got.String())
	}
}

// TestAddressesAccepted: the address checks of validate refuse only what
// a start would: a port 0 or a service name to listen on, and gRPC
// targets without a port (gRPC's default) or with a scheme, pass.
func TestAddressesAccepted(t *testing.T) {
	for _, args := range [][]string{
		{"-root", "/srv/tftp", "-listen", "127.0.0.1:0,[::1]:"},
		{"-root", "/srv/tftp", "-listen", ":tftp"},
		{"-root", "/srv/tftp", "-metrics", "localhost:9369", "-http", "[::1]:8080"},
		{"-backend", "content"},
		{"-backend", "dns:///content:7070"},
		{"-backend", "unix:///run/content.sock"},
		{"-backend", "10.0.0.5:7070, 10.0.0.6:7070"},
		{"-root", "/srv/tftp", "-stats-sink", "dns:///collector"},
		{"-backend", "127.0.0.1:7070,[::1]:7070", "-backend-token-file", "t"},
		{"-backend", "dns:///content:7070", "-backend-tls", "-backend-token-file", "t"},
		{"-root", "/srv/tftp", "-stats-sink", "localhost:7069", "-stats-sink-token-file", "t"},
		{"-root", "/srv/tftp", "-stats-sink", "collector:7069", "-stats-sink-ca", "ca.pem", "-stats-sink-token-file", "t"},
	} {
		t.Run(strings.Join(args, "="), func(t *testing.T) {
			if _, err := parseFlags(args, io.Discard); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// TestRangeMessagesSayWhatIsAccepted: the range errors of -max-blksize and
// -max-windowsize state the range validate accepts, no "or 0" that it
// refuses, and so does each bound: it is gateway.Server.Validate's, the
// values just outside it refused by both.
func TestRangeMessagesSayWhatIsAccepted(t *testing.T) {
	for _, tc := range []struct {
		flag     string
		min, max int
		srv      func(v int) *gateway.Server
	}{
		{"-max-blksize", 8, 65464, func(v int) *gateway.Server { return &gateway.Server{MaxBlockSize: v} }},
		{"-max-windowsize", 1, 32767, func(v int) *gateway.Server { return &gateway.Server{MaxWindowSize: v} }},
	} {
		for _, v := range []int{tc.min, tc.max} {
			if _, err := parseFlags([]string{"-root", "/srv/tftp", tc.flag, strconv.Itoa(v)}, io.Discard); err != nil {
				t.Errorf("%s %d: %v", tc.flag, v, err)
			}
			if err := tc.srv(v).Validate(); err != nil {
				t.Errorf("gateway.Server.Validate refuses %s %d: %v", tc.flag, v, err)
			}
		}
		for _, v := range []int{0, tc.min - 1, tc.max + 1} {
			_, err := parseFlags([]string{"-root", "/srv/tftp", tc.flag, strconv.Itoa(v)}, io.Discard)
			if want := fmt.Sprintf("%s %d: want %d to %d (", tc.flag, v, tc.min, tc.max); err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s %d: %v, want %q", tc.flag, v, err, want)
			} else if strings.Contains(err.Error(), "or 0") || strings.Contains(err.Error(), "leave the flag out") {
				t.Errorf("%s %d: %v: offers what is refused", tc.flag, v, err)
			}
			if v != 0 && tc.srv(v).Validate() == nil {
				t.Errorf("gateway.Server.Validate accepts %s %d", tc.flag, v)
			}
		}
	}
}
