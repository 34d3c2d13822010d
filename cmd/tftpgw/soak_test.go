package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestSoak runs tftpgw with two tftp-backend processes for TFTPGW_SOAK (a
// duration, e.g. 5m) under a mixed load, some of it through a lossy,
// duplicating proxy, killing (-9) and restarting one backend every
// soakRestartEvery. Every transfer must arrive intact, and the process's
// memory, descriptors and threads must stay flat. `make soak` runs it.
func TestSoak(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("TFTPGW_SOAK"))
	if err != nil || dur <= 0 {
		t.Skip("set TFTPGW_SOAK to a duration (e.g. TFTPGW_SOAK=5m) to run the soak test")
	}
	const (
		workers          = 16
		lossyWorkers     = 6 // through the proxy; the rest go direct
		soakRestartEvery = 30 * time.Second
		backendDown      = time.Second // between the kill and the restart
		transfersByProxy = 200         // a proxy's sockets are never freed: a new proxy after this many
	)
	sampleEvery := min(10*time.Second, max(dur/10, time.Second))

	// The corpus: 1 KiB .. 8 MiB.
	root := t.TempDir()
	sizes := []int{1 << 10, 4<<10 + 1, 64 << 10, 512<<10 + 3, 1 << 20, 3<<20 + 5, 8 << 20}
	names := make([]string, len(sizes))
	sums := make(map[string][32]byte)
	for i, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		names[i] = fmt.Sprintf("f%d.bin", n)
		sums[names[i]] = sha256.Sum256(b)
		if err := os.WriteFile(filepath.Join(root, names[i]), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	backendBin := filepath.Join(filepath.Dir(binPath), "tftp-backend")
	if out, err := exec.Command("go", "build", "-o", backendBin, "../tftp-backend").CombinedOutput(); err != nil {
		t.Fatalf("go build tftp-backend: %v\n%s", err, out)
	}
	backends := []*soakBackend{
		{bin: backendBin, root: root, addr: freeTCPAddr(t)},
		{bin: backendBin, root: root, addr: freeTCPAddr(t)},
	}
	for _, b := range backends {
		b.start(t)
		t.Cleanup(b.kill)
	}
	// Clients of the proxy all come from 127.0.0.1: no per-client rate
	// limit, which is not what is soaked.
	// The edge cache is off so that every transfer streams from a backend
	// and the kills break streams that must be resumed.
	g := startGateway(t, "-backend", backends[0].addr+","+backends[1].addr, "-client-rate", "-1", "-cache-size", "0")
	pid := g.cmd.Process.Pid
	direct := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(g.port))

	optionSets := []tftpclient.Options{
		{}, // RFC 1350 lock-step, 512-byte blocks
		{BlockSize: 1468},
		{BlockSize: 8192},
		{WindowSize: 4},
		{WindowSize: 4, BlockSize: 1468, TSize: true},
		{WindowSize: 16, BlockSize: 1468},
		{WindowSize: 16, BlockSize: 8192, TSize: true},
	}
	var (
		stop                 atomic.Bool
		transfers, bytesRecv atomic.Int64
		lossyTransfers       atomic.Int64
		mu                   sync.Mutex
		failures             []string
		proxyStats           gatewaytest.ProxyStats
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lossy := w < lossyWorkers
			var proxy *gatewaytest.Proxy
			closeProxy := func() {
				if proxy == nil {
					return
				}
				proxy.Close()
				s := proxy.Stats()
				mu.Lock()
				for d := range 2 {
					proxyStats.Received[d] += s.Received[d]
					proxyStats.Dropped[d] += s.Dropped[d]
					proxyStats.Duplicated[d] += s.Duplicated[d]
				}
				mu.Unlock()
				proxy = nil
			}
			defer closeProxy()
			for i := 0; !stop.Load(); i++ {
				target := direct
				opts := optionSets[(i/len(names)+w)%len(optionSets)] // with name: every pair in turn
				opts.RetransmitTimeout, opts.Retries = 500*time.Millisecond, 20
				if lossy {
					if i%transfersByProxy == 0 {
						closeProxy()
						proxy = gatewaytest.NewProxy(t, direct, gatewaytest.ProxyConfig{
							DropRate: 0.02, DuplicateRate: 0.01, Seed: int64(w*100000 + i),
						})
					}
					target = proxy.Addr()
				} else {
					opts.LocalAddr = netip.AddrFrom4([4]byte{127, 0, 3, byte(10 + w)})
				}
				name := names[(i*3+w)%len(names)]
				h := sha256.New()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				res, err := tftpclient.Get(ctx, target.String(), name, h, opts)
				cancel()
				if err == nil && !bytes.Equal(h.Sum(nil), func() []byte { s := sums[name]; return s[:] }()) {
					err = fmt.Errorf("sha256 differs (%d bytes)", res.Size)
				}
				transfers.Add(1)
				bytesRecv.Add(res.Size)
				if lossy {
					lossyTransfers.Add(1)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s %s lossy=%v opts=%+v after %v: %v",
						time.Now().Format("15:04:05.000"), name, lossy, opts, res.Duration.Round(time.Millisecond), err))
					mu.Unlock()
				}
			}
		}()
	}

	// Sample the process and restart backends until the time is up.
	var samples []procSample
	start := time.Now()
	sampleTick := time.NewTicker(sampleEvery)
	defer sampleTick.Stop()
	restartTick := time.NewTicker(min(soakRestartEvery, max(dur/3, time.Second)))
	defer restartTick.Stop()
	samples = append(samples, sampleProc(t, pid, ""))
	restarts := 0
	for end := time.After(dur); !stop.Load(); {
		select {
		case <-sampleTick.C:
			samples = append(samples, sampleProc(t, pid, ""))
		case <-restartTick.C:
			b := backends[restarts%len(backends)]
			b.kill()
			time.Sleep(backendDown)
			b.start(t)
			restarts++
		case <-end:
			stop.Store(true)
		case err := <-g.done:
			g.done <- err
			t.Fatalf("tftpgw exited during the soak: %v\n%s", err, tail(g.logText(), 40))
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	samples = append(samples, sampleProc(t, pid, ""))

	logs := g.logText()
	resumes := strings.Count(logs, "backend stream broke; resuming")
	outcomes := map[string]int{}
	for _, o := range []string{"ok", "probe", "aborted", "timeout", "error"} {
		outcomes[o] = strings.Count(logs, `"outcome":"`+o+`"`)
	}
	var (
		rss  = minMax(samples, func(s procSample) int64 { return s.rssKiB })
		fds  = minMax(samples, func(s procSample) int64 { return int64(s.fds) })
		thrs = minMax(samples, func(s procSample) int64 { return int64(s.threads) })
	)
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "duration\t%v\n", elapsed.Round(time.Second))
	fmt.Fprintf(tw, "transfers\t%d (%d through the lossy proxy)\n", transfers.Load(), lossyTransfers.Load())
	fmt.Fprintf(tw, "bytes\t%d (%.1f MiB/s)\n", bytesRecv.Load(), float64(bytesRecv.Load())/elapsed.Seconds()/(1<<20))
	fmt.Fprintf(tw, "failures\t%d\n", len(failures))
	fmt.Fprintf(tw, "backend restarts\t%d (kill -9)\n", restarts)
	fmt.Fprintf(tw, "resumes logged\t%d\n", resumes)
	fmt.Fprintf(tw, "session outcomes\t%v\n", outcomes)
	fmt.Fprintf(tw, "proxy\tc->s %d dropped %d duplicated; s->c %d dropped %d duplicated, of %d / %d\n",
		proxyStats.Dropped[0], proxyStats.Duplicated[0], proxyStats.Dropped[1], proxyStats.Duplicated[1], proxyStats.Received[0], proxyStats.Received[1])
	fmt.Fprintf(tw, "RSS KiB\tmin %d max %d\n", rss[0], rss[1])
	fmt.Fprintf(tw, "fds\tmin %d max %d\n", fds[0], fds[1])
	fmt.Fprintf(tw, "threads\tmin %d max %d\n", thrs[0], thrs[1])
	fmt.Fprintf(tw, "samples\t%d every %v\n", len(samples), sampleEvery)
	tw.Flush()
	t.Logf("soak summary:\n%s", sb.String())
	var series strings.Builder
	for i, s := range samples {
		fmt.Fprintf(&series, "%3d rss=%dKiB fds=%d threads=%d\n", i, s.rssKiB, s.fds, s.threads)
	}
	t.Logf("samples:\n%s", series.String())

	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more failures", len(failures)-10)
			break
		}
		t.Errorf("transfer failed: %s", f)
	}
	if transfers.Load() == 0 {
		t.Error("no transfer made")
	}
	if restarts > 0 && resumes == 0 {
		t.Logf("note: no transfer was resumed (no backend was killed mid-stream)")
	}

	// Flat: the last third's peak is within the first third's peak x 1.5
	// plus a constant (RSS 16 MiB: buffer pools and the heap's slack; fds
	// 16: session sockets and backend connections in flight; threads 8).
	if n := len(samples); n >= 6 {
		first, last := samples[:n/3], samples[n-n/3:]
		for _, c := range []struct {
			what  string
			get   func(procSample) int64
			slack int64
		}{
			{"RSS KiB", func(s procSample) int64 { return s.rssKiB }, 16 << 10},
			{"fds", func(s procSample) int64 { return int64(s.fds) }, 16},
			{"threads", func(s procSample) int64 { return int64(s.threads) }, 8},
		} {
			f, l := minMax(first, c.get)[1], minMax(last, c.get)[1]
			if l > f*3/2+c.slack {
				t.Errorf("%s grew: first third's peak %d, last third's %d", c.what, f, l)
			}
		}
	} else {
		t.Logf("only %d samples: stability not judged", len(samples))
	}
}

// soakBackend is a tftp-backend process that can be killed and restarted
// on the same port.
type soakBackend struct {
	bin, root, addr string
	mu              sync.Mutex
	cmd             *exec.Cmd
	done            chan struct{}
}

func (b *soakBackend) start(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := exec.Command(b.bin, "-listen", b.addr, "-root", b.root, "-log-format", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if waitTCP(b.addr, done, 5*time.Second) {
			b.mu.Lock()
			b.cmd, b.done = cmd, done
			b.mu.Unlock()
			return
		}
		cmd.Process.Kill()
		<-done
		if time.Now().After(deadline) {
			t.Fatalf("tftp-backend on %s did not start:\n%s", b.addr, stderr.String())
		}
		time.Sleep(200 * time.Millisecond) // the port may be held a moment
	}
}

// kill sends SIGKILL and waits for the process to go.
func (b *soakBackend) kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// waitTCP reports whether addr accepts connections before d passes or done
// is closed.
func waitTCP(addr string, done <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// minMax returns the least and the greatest of get over samples.
func minMax(samples []procSample, get func(procSample) int64) [2]int64 {
	if len(samples) == 0 {
		return [2]int64{}
	}
	vals := make([]int64, len(samples))
	for i, s := range samples {
		vals[i] = get(s)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	return [2]int64{vals[0], vals[len(vals)-1]}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
