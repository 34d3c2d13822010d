package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startGatewayCmd runs tftpgw on a free loopback port with -log-format
// json and args, through wrapper if any (as "prlimit --nofile=128:128
// --") and with env added to its environment. It waits for "tftpgw
// serving", collects the log, and stops the process (SIGTERM, then kill)
// when the test ends.
func startGatewayCmd(t *testing.T, wrapper, env []string, args ...string) *gw {
	t.Helper()
	g := &gw{port: freeUDPPort(t), done: make(chan error, 1)}
	argv := append(append(append([]string(nil), wrapper...), binPath, "-listen", "127.0.0.1:"+strconv.Itoa(g.port), "-log-format", "json"), args...)
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	g.cmd.Stderr = pw
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		var once sync.Once
		for sc.Scan() {
			g.mu.Lock()
			g.logs.Write(sc.Bytes())
			g.logs.WriteByte('\n')
			g.mu.Unlock()
			if strings.Contains(sc.Text(), "tftpgw serving") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, pr) // a line too long: keep the process writing
	}()
	// g.done is sent once the log is read to its end: a test that waits
	// for the exit then reads the last lines (regression: the scanner
	// could still hold them, and a drain test failed under load).
	go func() {
		err := g.cmd.Wait()
		pw.Close()
		<-scanned
		g.done <- err
	}()
	select {
	case <-ready:
	case err := <-g.done:
		t.Fatalf("tftpgw exited: %v\n%s", err, g.logText())
	case <-time.After(10 * time.Second):
		t.Fatal("tftpgw did not start")
	}
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(15 * time.Second):
			g.cmd.Process.Kill()
			<-g.done
		}
	})
	return g
}

// fdCount returns the number of open descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
