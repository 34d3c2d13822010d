package deploy

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capabilityName turns a unit's CAP_NET_BIND_SERVICE into setpriv's
// net_bind_service.
func capabilityName(c string) string {
	return strings.ToLower(strings.TrimPrefix(c, "CAP_"))
}

// freePrivilegedPort returns a port below 1024 of addr that is free (root
// can bind it to tell).
func freePrivilegedPort(t *testing.T, addr string) int {
	t.Helper()
	for p := 600; p < 1024; p++ {
		c, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatalf("no free UDP port below 1024 on %s", addr)
	return 0
}

// The credentials tftpgw.service gives the edge (User=, the ambient and
// bounding capabilities, NoNewPrivileges), applied with setpriv as systemd
// applies them, let the real binary bind a privileged port and serve as a
// plain user holding that one capability; without the ambient capability
// it cannot bind. The user is nobody, standing for tftpgw (which only
// sysusers creates).
func TestSystemdUnitCredentialsServeAsPlainUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing user, as systemd does, needs root")
	}
	setpriv := requireTool(t, "setpriv")
	unit := map[string]string{}
	for _, l := range parseUnit(t, filepath.Join("systemd", "tftpgw.service"), false) {
		unit[l.key] = l.value
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody to stand for %s: %v", unit["User"], err)
	}
	var caps, bounding []string
	for _, c := range strings.Fields(unit["AmbientCapabilities"]) {
		caps = append(caps, "+"+capabilityName(c))
	}
	for _, c := range strings.Fields(unit["CapabilityBoundingSet"]) {
		bounding = append(bounding, "+"+capabilityName(c))
	}
	if len(caps) == 0 || unit["NoNewPrivileges"] != "yes" {
		t.Fatalf("tftpgw.service: AmbientCapabilities=%q NoNewPrivileges=%q", unit["AmbientCapabilities"], unit["NoNewPrivileges"])
	}

	// The binary and a root the plain user can reach (test directories
	// are private to root).
	dir, err := os.MkdirTemp("", "tftpgw-creds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, dst string }{
		{filepath.Join(built(t), "tftpgw"), filepath.Join(dir, "tftpgw")},
		{filepath.Join(repoRoot(t), "examples", "tftproot", "hello.txt"), filepath.Join(root, "hello.txt")},
	} {
		if err := copyFile(c.src, c.dst); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{dir, root, filepath.Join(dir, "tftpgw")} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "hello.txt"), 0o644); err != nil {
		t.Fatal(err)
	}

	const ip = "127.0.0.69"
	addr := net.JoinHostPort(ip, strconv.Itoa(freePrivilegedPort(t, ip)))
	credentials := func(ambient bool) []string {
		args := []string{"--reuid=" + nobody.Uid, "--regid=" + nobody.Gid, "--clear-groups",
			"--bounding-set=-all," + strings.Join(bounding, ","), "--no-new-privs"}
		if ambient {
			args = append(args, "--inh-caps=-all,"+strings.Join(caps, ","), "--ambient-caps=-all,"+strings.Join(caps, ","))
		}
		return append(args, "--", filepath.Join(dir, "tftpgw"), "-listen", addr, "-root", root, "-log-level", "warn", "-drain-timeout", "1s")
	}

	t.Run("without the ambient capability it cannot bind", func(t *testing.T) {
		out, code := run(t, dir, nil, setpriv, credentials(false)...)
		if code == 0 || !strings.Contains(out, "permission denied") {
			t.Errorf("tftpgw as %s without CAP_NET_BIND_SERVICE on %s: exit %d, want a failure to bind:\n%s", nobody.Username, addr, code, out)
		}
	})

	t.Run("with the unit's credentials it serves", func(t *testing.T) {
		out := &lockedBuffer{}
		cmd := exec.Command(setpriv, credentials(true)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Error("tftpgw did not stop within 15 s of SIGTERM")
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, code := run(t, "", nil, filepath.Join(built(t), "tftpbench"), "-server", addr, "-file", "hello.txt", "-n", "1", "-retries", "0")
			if code == 0 {
				break
			}
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("tftpgw exited (%v):\n%s", err, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("tftpgw on %s does not serve within 10 s:\n%s\n%s", addr, res, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// setpriv execs tftpgw: the process is tftpgw, with these credentials.
		status, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("no /proc")
		} else if err != nil {
			t.Fatal(err)
		}
		fields := map[string]string{}
		for _, l := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fields[k] = strings.Join(strings.Fields(v), " ")
			}
		}
		const netBindService = "0000000000000400" // 1 << CAP_NET_BIND_SERVICE (10)
		want := map[string]string{
			"Uid":        strings.Repeat(nobody.Uid+" ", 3) + nobody.Uid,
			"Groups":     "",
			"CapEff":     netBindService,
			"CapPrm":     netBindService,
			"CapBnd":     netBindService,
			"NoNewPrivs": "1",
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("tftpgw's %s: %q, want %q", k, fields[k], v)
			}
		}
	})
}
