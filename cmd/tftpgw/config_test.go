package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/gateway/policy"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
)

// writeConfig writes a configuration file in a temporary directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tftpgw.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEveryFlagHasAKey: each flag but -config and -check has a key in the
// file, and a file setting every key sets every flag, to the file's value.
func TestEveryFlagHasAKey(t *testing.T) {
	fs := (&options{}).flagSet(io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := flagKeys[f.Name]; !ok && f.Name != "config" && f.Name != "check" {
			t.Errorf("-%s has no key in the configuration file (flagKeys)", f.Name)
		}
	})
	for name := range flagKeys {
		if fs.Lookup(name) == nil {
			t.Errorf("flagKeys has %s, which is not a flag", name)
		}
	}

	o := &options{set: map[string]bool{}}
	o.flagSet(io.Discard)
	if _, err := loadConfigFile("testdata/every-key.yaml", o, o.set); err != nil {
		t.Fatal(err)
	}
	for name := range flagKeys {
		if !o.set[name] {
			t.Errorf("testdata/every-key.yaml does not set %s (-%s)", flagKeys[name], name)
		}
	}
	values := flagValues(o)
	for name, want := range map[string]string{
		"listen": "127.0.0.1:6969,[::1]:6969", "root": "/srv/tftp", "user": "tftp", "edge-id": "edge-7",
		"backend": "dns:///content:7070", "backend-tls": "true", "backend-ca": "ca.pem", "backend-cert": "edge.pem",
		"backend-key": "edge-key.pem", "backend-server-name": "content", "backend-token-file": "backend.token",
		"backend-header-timeout": "3s", "backend-idle-timeout": "11s", "backend-resumes": "4", "backend-resume-timeout": "12s",
		"timeout": "2s", "min-timeout": "30ms", "retries": "6", "max-blksize": "1468", "max-windowsize": "32",
		"single-port": "true", "port-range": "50000-50999", "refuse-options": "windowsize,tsize", "drain-timeout": "20s",
		"max-sessions": "1000", "max-sessions-per-client": "8", "client-rate": "20",
		"max-window-memory": "256MiB", "max-window-memory-per-client": "-1",
		"stats-sink": "collector:7069", "stats-interval": "30s", "stats-sink-tls": "true", "stats-sink-ca": "sca.pem",
		"stats-sink-cert": "s.pem", "stats-sink-key": "s-key.pem", "stats-sink-server-name": "collector",
		"stats-sink-token-file": "stats.token", "metrics": "127.0.0.1:9369", "cache-size": "64MiB",
		"cache-max-age": "5s", "log-format": "json", "log-level": "debug",
		"http": "127.0.0.1:8080", "http-cert": "http.pem", "http-key": "http-key.pem", "http-timeout": "15s", "http-max-conns": "500",
		"upload-allow": "configs/**,*.core", "upload-max-size": "16MiB", "upload-overwrite": "true", "upload-path": "{client_ip}/{path}",
		"trace-filename-traceparent": "true",
	} {
		if values[name] != want {
			t.Errorf("-%s = %q from the file, want %q", name, values[name], want)
		}
	}
	if len(o.Rewrite) != 1 || len(o.Policy) != 2 || o.Policy[1].Uploads != policy.Drop {
		t.Errorf("rewrite %v, policy %v", o.Rewrite, o.Policy)
	}
}

// TestExampleConfig: examples/tftpgw.yaml is valid and shows every key.
func TestExampleConfig(t *testing.T) {
	const example = "../../examples/tftpgw.yaml"
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-config", example}, &stderr)
	if err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	if len(o.Rewrite) == 0 || len(o.Policy) == 0 {
		t.Errorf("the example has no rewrite rules or policy")
	}
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	// A key is shown when its name is written, as a key, after its
	// section's (commented out or not).
	for flagName, key := range flagKeys {
		at := 0
		for part := range strings.SplitSeq(key, ".") {
			re := regexp.MustCompile(`[\s{#]` + part + `:`)
			loc := re.FindStringIndex(text[at:])
			if loc == nil {
				t.Errorf("%s does not show %s (-%s)", example, key, flagName)
				break
			}
			at += loc[1]
		}
	}
	for _, k := range []string{"match", "replace", "lowercase", "if_exists", "deny", "clients", "allow", "action",
		"refuse_options", "max_blksize", "max_windowsize", "max_sessions_per_client", "rrq_per_second_per_client"} {
		if !strings.Contains(text, k) {
			t.Errorf("%s does not show the rule key %s", example, k)
		}
	}
}

// TestFlagsOverrideTheFile: a flag given wins over the file's key, and
// errors then name the flag, not the key.
func TestFlagsOverrideTheFile(t *testing.T) {
	p := writeConfig(t, "root: /srv/tftp\ntftp: {max_blksize: 1024, timeout: 2s}\n")
	o, err := parseFlags([]string{"-config", p, "-max-blksize", "512"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Serving.MaxBlksize != 512 || o.Serving.Timeout != 2*time.Second || o.Serving.Root != "/srv/tftp" {
		t.Errorf("max-blksize %d, timeout %v, root %q; want 512 (flag), 2s and /srv/tftp (file)", o.Serving.MaxBlksize, o.Serving.Timeout, o.Serving.Root)
	}
	var stderr bytes.Buffer
	_, err = parseFlags([]string{"-config", p, "-max-blksize", "0"}, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "tftpgw: -max-blksize 0: want 8 to 65464") {
		t.Errorf("-max-blksize 0 over the file: %v, stderr %q", err, stderr.String())
	}
}

// TestBadConfigNamesKeyAndLine: each problem of a file is reported with
// the file, its line and its key; an unknown key is an error; the run
// exits 2 (tftpgw -check, the real binary).
func TestBadConfigNamesKeyAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // in stderr, after "tftpgw: FILE"
	}{
		{"unknown key", "root: /tmp\ntftp:\n  timeout: 1s\n  blocksize: 1468\n", []string{":4: unknown key blocksize in tftp"}},
		{"unknown top-level key", "root: /tmp\nrewrites: []\n", []string{":2: unknown key rewrites in the top level"}},
		{"duration without a unit", "root: /tmp\ntftp: {timeout: 5}\n", []string{`:2: tftp.timeout: "5": want a duration with its unit`}},
		{"wrong type", "root: /tmp\ntftp:\n  retries: many\n", []string{`:3: tftp.retries: want an integer, got "many"`}},
		{"wrong type in a rule", "root: /tmp\npolicy:\n  - {clients: [10.0.0.0/8], max_blksize: lots}\n", []string{`:3: policy[0].max_blksize: want an integer, got "lots"`}},
		{"a list for a number", "root: /tmp\nlimits:\n  rrq_per_second_per_client: [1]\n", []string{`:3: limits.rrq_per_second_per_client: want a number, got a list`}},
		{"zero windowsize", "root: /tmp\ntftp:\n  max_windowsize: 0\n", []string{":3: tftp.max_windowsize 0: want 1 to 32767 (RFC 7440;"}},
		{"out of range", "root: /tmp\ntftp:\n  max_blksize: 70000\n", []string{":3: tftp.max_blksize 70000: want 8 to 65464 (RFC 2348)"}},
		{"zero", "root: /tmp\nlimits:\n  max_sessions: 0\n", []string{":3: limits.max_sessions 0: want a positive number, or -1 for no limit"}},
		{"both sources", "root: /tmp\nbackend:\n  target: x:1\n", []string{":1: give root or backend.target, not both"}},
		{"needs its main key", "root: /tmp\nbackend:\n  tls: {enabled: true}\n", []string{":3: backend.tls.enabled needs backend.target"}},
		{"bad network", "root: /tmp\npolicy:\n  - {clients: [10.0.0.0/33]}\n", []string{`:3: policy[0].clients[0]: "10.0.0.0/33": want a network`}},
		{"bad option", "root: /tmp\npolicy:\n  - {clients: [10.0.0.0/8]}\n  - {clients: [10.1.0.0/16], refuse_options: [multicast]}\n",
			[]string{`:4: policy[1]: refuse_options "multicast": want blksize, timeout, tsize or windowsize`}},
		{"bad action", "root: /tmp\npolicy:\n  - {clients: [10.0.0.0/8], allow: false, action: reject}\n", []string{`:3: policy[0]: action "reject": want error or drop`}},
		{"bad regexp", "root: /tmp\nrewrite:\n  - {match: '(', replace: x}\n", []string{":3: rewrite[0]: match: error parsing regexp"}},
		{"bad group", "root: /tmp\nrewrite:\n  - {match: 'a', replace: '$2'}\n", []string{":3: rewrite[0]: "}},
		{"no replace", "root: /tmp\nrewrite:\n  - {match: 'a'}\n", []string{":3: rewrite[0]: replace is missing"}},
		{"every error at once", "root: /tmp\ntftp: {timeout: 5, bogus: 1}\nlog: {level: loud}\n",
			[]string{":2: tftp.timeout", ":2: unknown key bogus in tftp", ":3: log.level"}},
		{"bad port range", "root: /tmp\ntftp:\n  port_range: 50000:50999\n", []string{`:3: tftp.port_range: `}},
		{"port range with single port", "root: /tmp\ntftp:\n  single_port: true\n  port_range: 50000-50003\n", []string{`:4: tftp.port_range 50000-50003 with tftp.single_port`}},
		{"not yaml", "root: [\n", []string{":1: did not find expected node content"}},
		{"listen address without a port", "root: /tmp\nlisten: \"10.0.0.5\"\n", []string{`:2: listen "10.0.0.5": missing port in address`}},
		{"metrics address without a port", "root: /tmp\n\nmetrics: 127.0.0.1\n", []string{`:3: metrics "127.0.0.1": missing port in address`}},
		{"token in plaintext", "backend:\n  target: 192.0.2.1:7070\n  token_file: /etc/tftpgw/token\n",
			[]string{`:3: backend.token_file: refusing to send a token in plaintext to backend.target "192.0.2.1:7070": give backend.tls.enabled (or backend.tls.ca), or a loopback target`}},
		{"negative cache size", "root: /tmp\ncache:\n  size: -1\n", []string{`:3: cache.size -1: want a number of bytes such as 512MiB, or 0 to turn the cache off`}},
		{"negative upload size", "root: /tmp\nupload:\n  max_size: -1\n", []string{`:3: upload.max_size -1: want a number of bytes such as 16MiB, or 0 for no limit`}},
		{"window memory below -1", "root: /tmp\nlimits:\n  max_window_memory_per_client: -2\n", []string{`:3: limits.max_window_memory_per_client -2: want a number of bytes`}},
		{"http port out of range", "root: /tmp\nhttp:\n  listen: \":80800\"\n", []string{`:3: http.listen ":80800": port 80800: want 0 to 65535`}},
		{"refused after decoding", "root: /tmp\nlog: {level: loud}\n", []string{`:2: log.level "loud": want debug, info, warn or error`}},
		{"bad upload pattern", "root: /tmp\nupload:\n  allow: [\"configs/[\"]\n", []string{`:3: upload.allow: upload: Allow[0] "configs/[": bad pattern`}},
		{"bad upload path", "root: /tmp\nupload:\n  allow: [\"*\"]\n  path: \"{mac}/{path}\"\n", []string{`:4: upload.path: upload: Path "{mac}/{path}"`}},
		{"bad uploads in a policy rule", "root: /tmp\npolicy:\n  - {clients: [10.0.0.0/8], uploads: maybe}\n", []string{`:3: policy[0]: uploads "maybe": want true, false or drop`}},
		{"overwrite with a backend", "backend: {target: \"x:1\"}\nupload: {allow: [\"*\"], overwrite: true}\n", []string{`:2: upload.overwrite is for root: with backend.target the backend decides`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeConfig(t, tc.text)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, binPath, "-config", p, "-check")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit %v, want status 2; stderr:\n%s", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), "tftpgw: "+p+w) {
					t.Errorf("stderr does not say %q:\n%s", "tftpgw: FILE"+w, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
}

// TestConfigReportsEveryProblem: the problems of a file are reported all
// at once, one line each, in the file's order, those of the command line
// last: a value the decoder refuses does not hide the values out of range,
// and is not reported again as the zero it decoded to (nor is the rule
// holding it).
func TestConfigReportsEveryProblem(t *testing.T) {
	p := writeConfig(t, `root: /tmp
tftp:
  max_blksize: 70000
  retries: -3
  timeout: 5
  bogus: 1
limits:
  max_sessions: five
  max_sessions_per_client: 0
log: {format: yaml, level: loud}
listen: [":69", {a: b}]
policy:
  - {clients: [10.0.0.0/33], allow: false, action: reject}
  - {clients: [10.0.0.0/8], allow: false, action: reject}
  - {clients: [10.1.0.0/16], max_windowsize: lots}
`)
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-config", p, "-client-rate", "0"}, &stderr); err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		p + ":3: tftp.max_blksize",
		p + ":4: tftp.retries -3",
		p + ":5: tftp.timeout: \"5\"",
		p + ":6: unknown key bogus in tftp",
		p + ":8: limits.max_sessions: want an integer, got \"five\"",
		p + ":9: limits.max_sessions_per_client 0",
		p + ":10: log.format",
		p + ":10: log.level",
		p + ":11: listen[1]: want a string, got a mapping",
		p + ":13: policy[0].clients[0]: \"10.0.0.0/33\"",
		p + ":14: policy[1]: action \"reject\"",
		p + ":15: policy[2].max_windowsize: want an integer, got \"lots\"",
		"-client-rate 0",
	}
	got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], "tftpgw: "+w) {
			t.Errorf("line %d: want %q", i+1, "tftpgw: "+w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d lines, want %d", len(got), len(want))
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr.String())
	}
}

// TestConfigLogInEitherCase: log.format, like log.level, takes either
// case.
func TestConfigLogInEitherCase(t *testing.T) {
	p := writeConfig(t, "root: /tmp\nlog: {format: JSON, level: Debug}\n")
	o, err := parseFlags([]string{"-config", p}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Log.Format != "json" {
		t.Errorf("log.format JSON read as %q, want json", o.Log.Format)
	}
}

// TestCheckAcceptsAndServesNothing: -check of a valid file says so on
// stdout and exits 0 without serving (its port stays free).
func TestCheckAcceptsAndServesNothing(t *testing.T) {
	port := freeUDPPort(t)
	p := writeConfig(t, "listen: 127.0.0.1:"+strconv.Itoa(port)+"\nroot: "+t.TempDir()+"\n")
	out, err := exec.Command(binPath, "-config", p, "-check").CombinedOutput()
	if err != nil || string(out) != "tftpgw: configuration OK\n" {
		t.Errorf("-check: %v, %q", err, out)
	}
	out, err = exec.Command(binPath, "-config", p, "-root", "/nonexistent/dir", "-check").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-root:") {
		t.Errorf("-check with a missing root: %v, %q", err, out)
	}
}

// fetch reads file from the server at srv with a scripted client bound to
// from (lock-step, 512-byte blocks) and returns its bytes, or the ERROR
// packet's bytes as err.
func fetch(t *testing.T, from string, srv netip.AddrPort, file string) ([]byte, error) {
	t.Helper()
	c := gatewaytest.NewClientOn(t, "udp4", from+":0", srv)
	c.RRQ(file, "octet")
	var got []byte
	for blk := uint16(1); ; blk++ {
		b, _ := c.Recv(5 * time.Second)
		switch {
		case len(b) >= 4 && b[1] == 5:
			return nil, errors.New(string(b))
		case len(b) < 4 || b[1] != 3 || uint16(b[2])<<8|uint16(b[3]) != blk:
			t.Fatalf("%s: got %q, want DATA %d", file, gatewaytest.Abbrev(b), blk)
		}
		got = append(got, b[4:]...)
		c.Ack(blk)
		if len(b)-4 < 512 {
			return got, nil
		}
	}
}

// TestConfigRewriteRules: with the rules of a file, boot/x is served as
// x, a {client_ip} rule picks a file per client (falling back to the
// common one), and a case-folding rule serves PXELINUX.CFG/DEFAULT; the
// session log shows both paths.
func TestConfigRewriteRules(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{
		"x":                             []byte("the x file"),
		"pxelinux.cfg/default":          []byte("DEFAULT linux"),
		"hosts/127.0.0.2/grub.cfg":      []byte("grub for 127.0.0.2"),
		"grub.cfg":                      []byte("grub for everyone"),
		"hosts/127.0.0.3/pxelinux.cfg/": nil,
	}
	for name, b := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if b != nil {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := writeConfig(t, `root: `+root+`
rewrite:
  - {match: '^/?boot/(.*)$', replace: '$1'}
  - {match: '(?i)^pxelinux\.cfg/(.*)$', replace: 'pxelinux.cfg/$1', lowercase: true}
  - {match: '^(.*)$', replace: 'hosts/{client_ip}/$1', if_exists: true}
`)
	g := startGateway(t, "-config", cfg)
	srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))
	for _, tc := range []struct{ from, file, want string }{
		{"127.0.0.2", "boot/x", "the x file"},
		{"127.0.0.2", "/boot/x", "the x file"},
		{"127.0.0.2", "PXELINUX.CFG/DEFAULT", "DEFAULT linux"},
		{"127.0.0.3", "boot/PXELINUX.CFG/DEFAULT", "DEFAULT linux"},
		{"127.0.0.2", "grub.cfg", "grub for 127.0.0.2"},
		{"127.0.0.3", "grub.cfg", "grub for everyone"},
	} {
		got, err := fetch(t, tc.from, srv, tc.file)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s from %s: %q, %v; want %q", tc.file, tc.from, got, err, tc.want)
		}
	}
	g.waitLog(t, `"path":"PXELINUX.CFG/DEFAULT","rewritten":"pxelinux.cfg/default"`)
	g.waitLog(t, `"path":"grub.cfg","rewritten":"hosts/127.0.0.2/grub.cfg"`)
}

// TestConfigPolicy: a refused network gets the chosen ERROR from the
// listening port, a dropped one gets nothing, and neither opens a socket
// (the process's socket count does not move, and no session starts); a
// refused option is left out of the OACK for its network only.
func TestConfigPolicy(t *testing.T) {
	root := t.TempDir()
	content := bytes.Repeat([]byte("0123456789"), 300)
	if err := os.WriteFile(filepath.Join(root, "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, `root: `+root+`
policy:
  - {clients: [127.0.0.2], allow: false, error: {code: 2, message: "not from this rack"}}
  - {clients: [127.0.0.3/32], allow: false, action: drop}
  - {clients: [127.0.0.4/32], refuse_options: [windowsize], max_blksize: 1024}
`)
	g := startGateway(t, "-config", cfg, "-metrics", "127.0.0.1:0")
	srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))
	sockets := func() int {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(g.cmd.Process.Pid) + "/fd")
		n := 0
		for _, e := range ents {
			if l, _ := os.Readlink("/proc/" + strconv.Itoa(g.cmd.Process.Pid) + "/fd/" + e.Name()); strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		return n
	}
	before := sockets()

	refused := gatewaytest.NewClientOn(t, "udp4", "127.0.0.2:0", srv)
	dropped := gatewaytest.NewClientOn(t, "udp4", "127.0.0.3:0", srv)
	const name = "f-with-a-name-long-enough-for-the-whole-message"
	for range 20 {
		refused.RRQ(name, "octet")
		if b, from := refused.Recv(5 * time.Second); from != srv || string(b) != string(gatewaytest.ErrorPacket(2, "not from this rack")) {
			t.Fatalf("refused: %q from %v, want ERROR 2 from the listening port %v", b, from, srv)
		}
		dropped.RRQ(name, "octet")
		if n := sockets(); n != before {
			t.Fatalf("%d sockets, %d before: a refused or dropped request opened one", n, before)
		}
	}
	dropped.ExpectNothing(300 * time.Millisecond)
	m := scrapeMetrics(t, metricsAddr(t, g))
	if m["tftpgw_policy_refusals_total"] != 20 || m["tftpgw_policy_drops_total"] != 20 || strings.Contains(g.logText(), `"msg":"session end"`) {
		t.Errorf("policy refusals %v, drops %v (want 20, 20); sessions: %v", m["tftpgw_policy_refusals_total"], m["tftpgw_policy_drops_total"],
			strings.Contains(g.logText(), `"msg":"session end"`))
	}

	for _, tc := range []struct {
		from string
		oack []byte
	}{
		{"127.0.0.4", gatewaytest.OACK("blksize", "1024", "tsize", "3000")},
		{"127.0.0.5", gatewaytest.OACK("blksize", "1468", "tsize", "3000", "windowsize", "4")},
	} {
		c := gatewaytest.NewClientOn(t, "udp4", tc.from+":0", srv)
		c.RRQ("f", "octet", "blksize", "1468", "tsize", "0", "windowsize", "4")
		c.Expect(tc.oack)
		c.SendError(0, "enough")
	}
}

// TestSIGHUPReload: SIGHUP changes a limit and a rewrite rule while a
// transfer in flight completes byte-identical; a broken file on SIGHUP is
// refused, logged and counted, and the configuration before it keeps
// serving; a setting that needs a restart is named.
func TestSIGHUPReload(t *testing.T) {
	root := t.TempDir()
	big := randomFile(t, root, "big.bin", 512*200+7)
	for name, text := range map[string]string{"old.txt": "old rule", "new.txt": "new rule"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgText := func(target string, perClient int) string {
		return "root: " + root + "\nrewrite:\n  - {match: '^which-rule-applies$', replace: '" + target + "'}\n" +
			"limits: {max_sessions_per_client: " + strconv.Itoa(perClient) + "}\n"
	}
	cfg := writeConfig(t, cfgText("old.txt", 4))
	// A fixed 5 s timer: the transfer in flight waits for the test.
	g := startGateway(t, "-config", cfg, "-metrics", "127.0.0.1:0", "-timeout", "5s", "-min-timeout", "5s")
	srv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))

	// A transfer in flight across the reloads, from 127.0.0.2.
	inflight := gatewaytest.NewClientOn(t, "udp4", "127.0.0.2:0", srv)
	inflight.RRQ("big.bin", "octet")
	var got []byte
	next := uint16(1)
	step := func(n int) { // n more blocks
		t.Helper()
		for range n {
			b, _ := inflight.Recv(5 * time.Second)
			for len(b) >= 4 && b[1] == 3 && uint16(b[2])<<8|uint16(b[3]) < next {
				b, _ = inflight.Recv(5 * time.Second) // a retransmission, while the test was busy
			}
			if len(b) < 4 || b[1] != 3 || uint16(b[2])<<8|uint16(b[3]) != next {
				t.Fatalf("in flight: got %q, want DATA %d", gatewaytest.Abbrev(b), next)
			}
			got = append(got, b[4:]...)
			inflight.Ack(next)
			next++
		}
	}
	step(50)
	if b, _ := fetch(t, "127.0.0.2", srv, "which-rule-applies"); string(b) != "old rule" {
		t.Fatalf("before the reload: %q", b)
	}

	// The reload: a new rule, one session per client.
	if err := os.WriteFile(cfg, []byte(cfgText("new.txt", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, `"msg":"configuration reloaded"`)
	step(50)
	// 127.0.0.2 holds a session (the one in flight): busy now.
	if _, err := fetch(t, "127.0.0.2", srv, "which-rule-applies"); err == nil || !strings.Contains(err.Error(), "server busy") {
		t.Errorf("a second session of 127.0.0.2 after the reload: %v, want server busy", err)
	}
	if b, err := fetch(t, "127.0.0.3", srv, "which-rule-applies"); string(b) != "new rule" {
		t.Errorf("after the reload: %q, %v; want the new rule's file", b, err)
	}

	// A broken file: refused, the reloaded configuration stays.
	if err := os.WriteFile(cfg, []byte("root: "+root+"\nrewrite:\n  - {match: '(', replace: x}\nlisten: 127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, `"msg":"configuration reload refused; the running configuration stays"`)
	step(50)
	if b, err := fetch(t, "127.0.0.3", srv, "which-rule-applies"); string(b) != "new rule" {
		t.Errorf("after a refused reload: %q, %v; want the new rule's file still", b, err)
	}
	mt := scrapeMetrics(t, metricsAddr(t, g))
	if mt["tftpgw_config_last_reload_successful"] != 0 {
		t.Errorf("tftpgw_config_last_reload_successful %v after a refused reload, want 0", mt["tftpgw_config_last_reload_successful"])
	}

	// A setting that needs a restart is named; the rest is reloaded.
	if err := os.WriteFile(cfg, []byte(cfgText("old.txt", 4)+"cache: {size: 1MiB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitLog(t, `"keys":["cache.size"]`)
	if mt := scrapeMetrics(t, metricsAddr(t, g)); mt["tftpgw_config_last_reload_successful"] != 1 {
		t.Errorf("tftpgw_config_last_reload_successful %v, want 1", mt["tftpgw_config_last_reload_successful"])
	}

	// The transfer in flight ends byte-identical.
	for len(got) < len(big) {
		step(1)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("the transfer across the reloads: %d bytes, differ from the file's %d", len(got), len(big))
	}
	if strings.Count(g.logText(), `"msg":"configuration reloaded"`) != 2 {
		t.Errorf("log:\n%s", g.logText())
	}
}

// TestConfigRulesCompile: the rules of testdata/every-key.yaml become the
// packages' rules.
func TestConfigRulesCompile(t *testing.T) {
	o := &options{set: map[string]bool{}}
	o.flagSet(io.Discard)
	if _, err := loadConfigFile("testdata/every-key.yaml", o, o.set); err != nil {
		t.Fatal(err)
	}
	wantRule := rewrite.Rule{Match: "^/?boot/(.*)$", Replace: "$1"}
	if len(o.Rewrite) != 1 || o.Rewrite[0] != wantRule {
		t.Errorf("rewrite %+v, want %+v", o.Rewrite, wantRule)
	}
	p := o.Policy[0]
	if p.Access != policy.Refuse || p.Error == nil || *p.Error != (gateway.Error{Code: 2, Message: "go away"}) ||
		!slices.Equal(p.Clients, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")}) {
		t.Errorf("policy %+v", p)
	}
}

// TestCheckLooksUpUser: -check refuses a -user that does not exist (a
// start would).
// TestCheckReportsEveryProblemAtOnce: -check reports a value out of range
// and a root that does not open together, not one run after the other
// (found in review: main stopped at the first kind).
func TestCheckReportsEveryProblemAtOnce(t *testing.T) {
	out, err := exec.Command(binPath, "-root", "/nonexistent/dir", "-max-blksize", "70000", "-check").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-max-blksize") || !strings.Contains(string(out), "-root:") {
		t.Errorf("-check: %v, %q; want both the -max-blksize and the -root problem", err, out)
	}
}

func TestCheckLooksUpUser(t *testing.T) {
	out, err := exec.Command(binPath, "-root", t.TempDir(), "-user", "no-such-user-tftpgw", "-check").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-user no-such-user-tftpgw") {
		t.Errorf("-check with an unknown user: %v, %q", err, out)
	}
}

// TestListenSeveralAddresses: a list of addresses listens on each, an IPv4
// and an IPv6 literal side by side (each on its own family), and serves
// from both.
func TestListenSeveralAddresses(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("both families"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	cfg := writeConfig(t, "root: "+root+"\nlisten: [\"127.0.0.1:"+strconv.Itoa(port)+"\", \"[::1]:"+strconv.Itoa(port)+"\"]\n")
	g := startGateway(t, "-config", cfg, "-listen", "127.0.0.1:"+strconv.Itoa(port)+",[::1]:"+strconv.Itoa(port))
	g.waitLog(t, `"listen":"127.0.0.1:`+strconv.Itoa(port)+`,[::1]:`+strconv.Itoa(port)+`"`)
	for _, tc := range []struct{ network, from, server string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1"},
		{"udp6", "[::1]:0", "::1"},
	} {
		srv := netip.AddrPortFrom(netip.MustParseAddr(tc.server), uint16(port))
		c := gatewaytest.NewClientOn(t, tc.network, tc.from, srv)
		c.RRQ("f", "octet")
		c.Expect(gatewaytest.Data(1, []byte("both families")))
		c.Ack(1)
	}
}
