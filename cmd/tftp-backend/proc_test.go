package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runMain runs tftp-backend with args and returns its exit code and
// output; it is killed after 3 s (-h or a bad flag must stop it at once).
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TFTP_BACKEND_AS_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("tftp-backend %s: still running after 3 s", strings.Join(args, " "))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return code, string(out)
}

// proc is a tftp-backend process.
type proc struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error // the exit, once; put back by whoever takes it
}

var servingRE = regexp.MustCompile(`"?msg"?[=:]"tftp-backend serving".*?"?addr"?[=:]"?([0-9.:\[\]]+)`)

// startProc runs tftp-backend with args until the test ends, and returns
// it once it serves.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "TFTP_BACKEND_AS_MAIN=1")
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		<-scanned
		p.done <- err
	}()
	select {
	case p.addr = <-ready:
	case err := <-p.done:
		p.done <- err
		t.Fatalf("tftp-backend exited: %v\n%s", err, p.logText())
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatal("tftp-backend did not start")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog waits up to 5 s for a log line holding s, and returns the log.
func (p *proc) waitLog(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := p.logText()
		if strings.Contains(logs, s) {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit, which must be clean.
func (p *proc) stop(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("tftp-backend: %v\n%s", err, p.logText())
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("tftp-backend still running 15 s after SIGTERM")
		p.done <- <-p.done
	}
}
