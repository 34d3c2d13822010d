// Package proctest runs a command's main in a process of its own, for the
// command's tests: the test binary started again, with an environment
// variable that makes its TestMain call main (see cmd/tftp-backend and
// cmd/tftp-collector). It keeps the process's log (its standard error)
// and returns once a line says the process serves.
package proctest

import (
	"bufio"
	"bytes"
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

// A Proc is a running command.
type Proc struct {
	Cmd  *exec.Cmd
	Addr string // the first group of the line that matched ready

	name string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error // the exit, once; put back by whoever takes it
}

// Start runs the test binary with args and env added to its environment
// until the test ends, and returns it once a line of its standard error
// matches ready, whose first group is the address it serves (Proc.Addr).
// name names the command in messages. At the end of the test the process
// gets SIGTERM and must exit cleanly within 15 s.
func Start(t testing.TB, name string, env []string, ready *regexp.Regexp, args ...string) *Proc {
	t.Helper()
	p := &Proc{name: name, done: make(chan error, 1)}
	p.Cmd = exec.Command(os.Args[0], args...)
	p.Cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.Cmd.Stderr = pw
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
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
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.Cmd.Wait()
		pw.Close()
		<-scanned
		p.done <- err
	}()
	select {
	case p.Addr = <-addr:
	case err := <-p.done:
		p.done <- err
		t.Fatalf("%s exited: %v\n%s", name, err, p.LogText())
	case <-time.After(10 * time.Second):
		p.Cmd.Process.Kill()
		p.done <- <-p.done
		t.Fatalf("%s did not start\n%s", name, p.LogText())
	}
	t.Cleanup(func() {
		if err := p.Stop(t); err != nil {
			t.Errorf("%s: %v\n%s", name, err, p.LogText())
		}
	})
	return p
}

// LogText returns the log so far.
func (p *Proc) LogText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// WaitLog waits up to 5 s for a log line holding s, and returns the log.
func (p *Proc) WaitLog(t testing.TB, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs := p.LogText()
		if strings.Contains(logs, s) {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log of %s:\n%s", s, p.name, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Exited reports whether the process has exited, and its exit.
func (p *Proc) Exited() (exited bool, err error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and returns the exit; a process still running 15 s
// later is killed, and the test fails.
func (p *Proc) Stop(t testing.TB) error {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(15 * time.Second):
		p.Cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		t.Errorf("%s still running 15 s after SIGTERM", p.name)
		return err
	}
}
