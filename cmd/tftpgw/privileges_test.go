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

// TestServiceUserMay: may reads the owner's, the group's or the others'
// bits of the mode, whichever apply to the user (the owner's alone for the
// owner), after symbolic links, and with parents every directory above
// too; what it cannot examine it leaves to the checks that open it.
func TestServiceUserMay(t *testing.T) {
	owner := &serviceUser{name: "owner", uid: os.Getuid(), gid: os.Getgid()}
	other := &serviceUser{name: "other", uid: os.Getuid() + 4242, gid: os.Getgid() + 4242}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // the test's directory, which MkdirTemp made 0700
	os.Chmod(dir, 0o755)
	mk := func(name string, mode os.FileMode, isDir bool) string {
		p := filepath.Join(dir, name)
		var err error
		if isDir {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte("token"), 0o600)
		}
		if err == nil {
			err = os.Chmod(p, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	closed := mk("closed", 0o700, true)
	searchable := mk("searchable", 0o701, true)
	groupOnly := mk("group-only", 0o070, true)
	mk("closed/token", 0o644, false)
	private := mk("private-token", 0o640, false)
	public := mk("public-token", 0o644, false)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(closed, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(closed, 0o700); os.Chmod(groupOnly, 0o700) })
	for _, tc := range []struct {
		name    string
		u       *serviceUser
		path    string
		perm    uint32
		parents bool
		want    bool
	}{
		{"others may not search a 0700 directory", other, closed, permSearch, false, false},
		{"others may search a 0701 directory", other, searchable, permSearch, false, true},
		{"the owner may search a 0700 directory", owner, closed, permSearch, false, true},
		{"the owner's bits alone apply to the owner", owner, groupOnly, permSearch, false, false},
		{"a symbolic link is followed", other, link, permSearch, false, false},
		{"others may read a 0644 file", other, public, permRead, true, true},
		{"others may not read a 0640 file", other, private, permRead, true, false},
		{"a 0644 file in a 0700 directory, parents checked", other, filepath.Join(closed, "token"), permRead, true, false},
		{"a 0644 file in a 0700 directory, alone", other, filepath.Join(closed, "token"), permRead, false, true},
		{"a missing path is left to the checks that open it", other, filepath.Join(dir, "missing"), permRead, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.u.may(tc.path, tc.perm, tc.parents); got != tc.want {
				t.Errorf("%s may(%s, %d, %v) = %v, want %v", tc.u.name, tc.path, tc.perm, tc.parents, got, tc.want)
			}
		})
	}
}

// TestCheckUser: -check reports what a start with -user would refuse,
// without changing user: not running as root, a -root the user cannot
// search, a token file it cannot read.
func TestCheckUser(t *testing.T) {
	nobody, err := lookupServiceUser("nobody")
	if err != nil || nobody.uid == os.Getuid() {
		t.Skipf("needs a user nobody other than the test's (%v)", err)
	}
	open := t.TempDir()
	os.Chmod(open, 0o755)
	closed := t.TempDir()
	os.Chmod(closed, 0o700)
	token := filepath.Join(closed, "token")
	if err := os.WriteFile(token, []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    options
		euid int
		want []string // in the error; none: no error
	}{
		{"no user", options{Serving: servingOptions{Root: closed}}, 1000, nil},
		{"root, a root directory it may search", options{User: "nobody", Serving: servingOptions{Root: open}}, 0, nil},
		{"not root", options{User: "nobody", Serving: servingOptions{Root: open}}, 1000,
			[]string{"-user nobody: tftpgw runs as uid 1000, not root, and could not change user"}},
		{"a root directory it cannot search", options{User: "nobody", Serving: servingOptions{Root: closed}}, 0,
			[]string{"-user nobody cannot search -root " + closed}},
		{"a token file it cannot read", options{User: "nobody", Serving: servingOptions{Root: open},
			Stats: statsOptions{Sink: clientOptions{TokenFile: token}}}, 0,
			[]string{"-user nobody cannot read -stats-sink-token-file " + token}},
		{"every problem", options{User: "nobody", Serving: servingOptions{Root: closed},
			Backend: backendOptions{clientOptions: clientOptions{TokenFile: token}}}, 1000,
			[]string{"not root", "cannot search -root", "cannot read -backend-token-file"}},
		{"unknown user", options{User: "no-such-user-tftpgw"}, 0, []string{"-user no-such-user-tftpgw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.checkUser(tc.euid)
			if len(tc.want) == 0 && err != nil {
				t.Errorf("checkUser: %v, want nil", err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("checkUser: %v, want %q", err, w)
				}
			}
		})
	}
}

// TestCheckRefusesRootUserCannotSearch: tftpgw -check with -user and a
// -root only root may search fails, as the start would (run as root), or
// says that tftpgw is not root (run as another user).
func TestCheckRefusesRootUserCannotSearch(t *testing.T) {
	if u, err := lookupServiceUser("nobody"); err != nil || u.uid == os.Getuid() {
		t.Skipf("needs a user nobody other than the test's (%v)", err)
	}
	root := t.TempDir()
	os.Chmod(root, 0o700)
	want := "-user nobody cannot search -root " + root
	if os.Geteuid() != 0 {
		want = "not root, and could not change user"
	}
	out, err := exec.Command(binPath, "-listen", "127.0.0.1:0", "-root", root, "-user", "nobody", "-check").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), want) {
		t.Errorf("-check: %v, %q; want exit status 2 and %q", err, out, want)
	}
}

// TestRootWithoutUserWarns: started as root without -user, tftpgw serves
// as root and says so once (found in operator review: it said nothing,
// although the README says never to run as root).
func TestRootWithoutUserWarns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	g := startGateway(t, "-root", t.TempDir())
	g.waitLog(t, "tftpgw serving")
	if n := strings.Count(g.logText(), "serving as root: give -user NAME"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, g.logText())
	}
}
