package deploy

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// freeUDPPort returns a UDP port of 127.0.0.1 that was free a moment ago
// and that no other call of this test binary has returned (see newPort).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	return newPort(t, func() int {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	})
}

// startEdge runs tftpgw on 127.0.0.1 serving examples/tftproot, and waits
// (at most 10 s) until a read request succeeds. It returns the address and
// a function that stops the edge (SIGTERM, then waits).
func startEdge(t *testing.T) (string, func()) {
	t.Helper()
	bin := built(t)
	addr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	cmd := exec.Command(filepath.Join(bin, "tftpgw"), "-listen", addr,
		"-root", filepath.Join(repoRoot(t), "examples", "tftproot"), "-log-level", "warn", "-drain-timeout", "1s")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("tftpgw did not stop within 15 s of SIGTERM")
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := run(t, "", nil, filepath.Join(bin, "tftpbench"), "-server", addr, "-file", "hello.txt", "-n", "1", "-retries", "0")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tftpgw on %s does not serve hello.txt:\n%s", addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, stop
}

// The anycast check announces the prefix once the edge serves, withdraws
// it in maintenance, announces it again after, and withdraws it when the
// edge stops answering.
func TestAnycastCheckFollowsTheEdge(t *testing.T) {
	requireTool(t, "bash")
	addr, stopEdge := startEdge(t)
	maint := filepath.Join(t.TempDir(), "maintenance")
	script, err := filepath.Abs(filepath.Join("anycast", "tftp-anycast-check"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(),
		"ANYCAST_PREFIX=192.0.2.69/32", "TFTP_SERVER="+addr, "TFTP_FILE=hello.txt",
		"TFTPBENCH="+filepath.Join(built(t), "tftpbench"), "MAINTENANCE_FILE="+maint,
		"CHECK_INTERVAL=0.2", "CHECK_RISE=2", "CHECK_FALL=2",
		// 2 to announce, 1 in maintenance, 2 to announce again, 2 to
		// withdraw: then it exits.
		"CHECK_ROUNDS=7")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	expect := func(want string, then func()) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the check ended before printing %q (%v)", want, lines.Err())
		}
		if got := lines.Text(); got != want {
			t.Fatalf("the check printed %q, want %q", got, want)
		}
		then()
	}
	announce, withdraw := "announce route 192.0.2.69/32 next-hop self", "withdraw route 192.0.2.69/32 next-hop self"
	expect(announce, func() {
		if err := os.WriteFile(maint, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	expect(withdraw, func() {
		if err := os.Remove(maint); err != nil {
			t.Fatal(err)
		}
	})
	expect(announce, stopEdge)
	expect(withdraw, func() {})
	if lines.Scan() {
		t.Errorf("the check printed %q after the last withdraw", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the check exited with %v", err)
	}
}
