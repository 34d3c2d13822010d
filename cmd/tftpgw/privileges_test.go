package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The nobody user and nogroup group of Debian and most Linux systems.
const nobodyID = 65534

// needRootAndNobody skips a test that must start tftpgw as root and drop
// to nobody.
func needRootAndNobody(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to start tftpgw as root")
	}
	if b, err := os.ReadFile("/etc/passwd"); err != nil || !bytes.Contains(b, fmt.Appendf(nil, "nobody:x:%d:%d:", nobodyID, nobodyID)) {
		t.Skipf("no nobody user with uid and gid %d", nobodyID)
	}
}

// privilegedPort returns a port below 1024 that is free on loopback.
func privilegedPort(t *testing.T, network string) int {
	t.Helper()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err != nil || strings.TrimSpace(string(b)) != "1024" {
		t.Skipf("ip_unprivileged_port_start is not 1024 (%q, %v)", b, err)
	}
	for p := 1000; p > 600; p-- {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		var err error
		if network == "udp4" {
			var c net.PacketConn
			if c, err = net.ListenPacket(network, addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen(network, addr); err == nil {
				l.Close()
			}
		}
		if err == nil {
			return p
		}
	}
	t.Skip("no free port in 601..1000")
	return 0
}

// serveRoot makes a directory nobody may search, holding: public (0644,
// root's), private (0600, root's), mode-000 (root's), nobodys (0600,
// nobody's) and closed/file (0644 in a 0700 directory of root's).
func serveRoot(t *testing.T) (dir string, public []byte) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	public = randomFile(t, dir, "public", 700)
	for name, mode := range map[string]os.FileMode{"private": 0o600, "mode-000": 0, "nobodys": 0o600} {
		randomFile(t, dir, name, 100)
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "nobodys"), nobodyID, nobodyID); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "closed"), 0o700); err != nil {
		t.Fatal(err)
	}
	randomFile(t, filepath.Join(dir, "closed"), "file", 100)
	return dir, public
}

// threadIDs returns the Uid, Gid, Groups and capability lines of every
// thread of the process, thread by thread.
func threadIDs(t *testing.T, pid int) map[string][]string {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads of %d: %v", pid, err)
	}
	threads := map[string][]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			key, _, _ := strings.Cut(line, ":")
			switch key {
			case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb":
				tid := filepath.Base(filepath.Dir(p))
				threads[tid] = append(threads[tid], strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return threads
}

// fetchFirst requests file and returns the first packet answering it
// (DATA 1 or an ERROR); after DATA 1 it ends the session with an ERROR,
// as a size probe does.
func fetchFirst(t *testing.T, port int, file string) []byte {
	t.Helper()
	c := newPeer(t)
	c.rrq(port, file)
	b := c.recv(5 * time.Second)
	if b == nil {
		t.Fatalf("%s: no answer", file)
	}
	if len(b) >= 4 && b[1] == 3 {
		c.send(c.tid, []byte("\x00\x05\x00\x00probe\x00"))
	}
	return b
}

var errAccessPkt = []byte("\x00\x05\x00\x02access violation\x00")

// TestUserDropsPrivilegesOnEveryThread (issue 14): started as root with
// -user nobody, tftpgw binds its sockets (TFTP and -metrics, on ports
// below 1024 here, which nobody could not bind) and then
// runs as nobody:nogroup on every thread, with no supplementary group and
// no capability, so it cannot read what nobody cannot: a file that is
// root's alone, mode 000 or in a closed directory gets ERROR 2, while
// nobody's own 0600 file is served (the kernel decides, not the mode bits
// for others). It used to keep root for its whole life (there was no
// -user).
func TestUserDropsPrivilegesOnEveryThread(t *testing.T) {
	needRootAndNobody(t)
	dir, public := serveRoot(t)
	// Privileged ports: bound as root, before the change of user.
	port, mport := privilegedPort(t, "udp4"), privilegedPort(t, "tcp4")
	g := startGateway(t, "-root", dir, "-user", "nobody",
		"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-metrics", fmt.Sprintf("127.0.0.1:%d", mport))
	g.port = port
	// Sessions run on other threads; the metrics server answers as well.
	if got := fetchFirst(t, g.port, "public"); !bytes.Equal(got, append([]byte{0, 3, 0, 1}, public[:512]...)) {
		t.Errorf("public: got %q", got[:min(len(got), 40)])
	}
	scrapeMetrics(t, metricsAddr(t, g))
	for _, name := range []string{"private", "mode-000", "closed/file"} {
		if got := fetchFirst(t, g.port, name); !bytes.Equal(got, errAccessPkt) {
			t.Errorf("%s: got %q, want %q", name, got[:min(len(got), 40)], errAccessPkt)
		}
	}
	if got := fetchFirst(t, g.port, "nobodys"); len(got) < 4 || got[1] != 3 {
		t.Errorf("nobody's own file: got %q, want DATA 1", got[:min(len(got), 40)])
	}

	id := fmt.Sprint(nobodyID)
	want := []string{
		"Uid: " + id + " " + id + " " + id + " " + id,
		"Gid: " + id + " " + id + " " + id + " " + id,
		"Groups:",
		"CapInh: 0000000000000000", "CapPrm: 0000000000000000", "CapEff: 0000000000000000", "CapAmb: 0000000000000000",
	}
	threads := threadIDs(t, g.cmd.Process.Pid)
	if len(threads) < 2 {
		t.Errorf("%d threads: the runtime runs several", len(threads))
	}
	for tid, lines := range threads {
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Errorf("thread %s:\n  %s\nwant\n  %s", tid, strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
		}
	}
	if !strings.Contains(g.logText(), `"msg":"running as -user","user":"nobody","uid":65534,"gid":65534`) {
		t.Errorf("no log line for the change of user:\n%s", g.logText())
	}
}

// TestRootServesOnlyWhatAnyoneMayRead (issue 14): run as root without
// -user, tftpgw served a mode-000 file. It now serves only what anyone
// may read: ERROR 2 for a file that is root's alone, mode 000 or in a
// closed directory.
func TestRootServesOnlyWhatAnyoneMayRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir, public := serveRoot(t)
	g := startGateway(t, "-root", dir)
	if got := fetchFirst(t, g.port, "public"); !bytes.Equal(got, append([]byte{0, 3, 0, 1}, public[:512]...)) {
		t.Errorf("public: got %q", got[:min(len(got), 40)])
	}
	for _, name := range []string{"private", "mode-000", "nobodys", "closed/file"} {
		if got := fetchFirst(t, g.port, name); !bytes.Equal(got, errAccessPkt) {
			t.Errorf("%s: got %q, want %q", name, got[:min(len(got), 40)], errAccessPkt)
		}
	}
}

// TestUserRefusals: tftpgw stops, with a message, rather than run with a
// -user that would keep root, does not exist, or cannot search -root.
func TestUserRefusals(t *testing.T) {
	needRootAndNobody(t)
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil { // root's alone
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"root_by_name", []string{"-user", "root"}, 2, "-user root: uid 0, gid 0: it would keep root's privileges"},
		{"root_by_number", []string{"-user", "0"}, 2, "-user 0: uid 0, gid 0: it would keep root's privileges"},
		{"unknown", []string{"-user", "no-such-user-tftpgw"}, 2, "-user no-such-user-tftpgw: user: unknown user no-such-user-tftpgw"},
		{"root_dir_not_searchable", []string{"-user", "nobody", "-root", closed}, 1,
			"-user nobody cannot search -root " + closed + " (it needs x permission there, and files it may read): statat .: permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			args := append([]string{"-listen", "127.0.0.1:0", "-root", t.TempDir()}, tc.args...)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("%v, want exit status %d\n%s", err, tc.code, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), "tftpgw serving") {
				t.Errorf("it served:\n%s", out)
			}
		})
	}
}

// TestUserChecksStatsSinkTokenFile: the -stats-sink-token-file is read
// again when it changes, as the -backend-token-file is, so tftpgw must
// stop at start when the -user it drops to cannot read it. It used to
// check only the backend's: with a token file only root may read, it
// served, kept the first token for good and silently ignored every
// rotation (the sink then refused the edge once the old token was
// revoked).
func TestUserChecksStatsSinkTokenFile(t *testing.T) {
	needRootAndNobody(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil { // root's alone
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "-listen", "127.0.0.1:0", "-root", dir, "-user", "nobody",
		"-stats-sink", "127.0.0.1:1", "-stats-sink-token-file", token).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("%v, want exit status 1\n%s", err, out)
	}
	if want := "-user nobody cannot read -stats-sink-token-file"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	if strings.Contains(string(out), "tftpgw serving") {
		t.Errorf("it served:\n%s", out)
	}
}
