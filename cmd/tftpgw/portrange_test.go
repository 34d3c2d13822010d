package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// udpPorts returns the local ports of the UDP sockets (IPv4 and IPv6)
// that process pid holds: its descriptors' socket inodes, looked up in
// its network namespace's /proc/PID/net/udp and udp6.
func udpPorts(t *testing.T, pid int) []uint16 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("fds: %v", err)
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []uint16
	for _, table := range []string{"udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			if table == "udp6" {
				continue // no IPv6
			}
			t.Fatalf("%s: %v", table, err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 || !inodes[f[9]] {
				continue // the header, or another process's socket
			}
			_, port, ok := strings.Cut(f[1], ":") // local_address: hex IP, hex port
			p, err := strconv.ParseUint(port, 16, 16)
			if !ok || err != nil {
				t.Fatalf("%s: bad line %q", table, line)
			}
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return ports
}

// realClient is how the test runs one of the real TFTP clients.
type realClient struct {
	bin  string
	argv func(port, remote, local string) []string
}

// TestPortRangeRealClients: tftpgw -port-range with 4 ports, four real
// clients (curl, tftp-hpa, atftp with a window, busybox) fetching at once
// from a slow backend: while they run, the process's UDP sockets are the
// listening socket and sockets on ports of the range, one per session; a
// fifth client gets exactly ERROR 0 "server busy" from the listening port,
// counted in tftpgw_ports_exhausted_total and tftpgw_busy_refusals_total;
// and the four complete with the right bytes. A client that is not
// installed is replaced by a hand-driven one holding a session (in CI, a
// missing client fails the test).
func TestPortRangeRealClients(t *testing.T) {
	root := t.TempDir()
	clients := []realClient{
		{"curl", func(port, r, l string) []string {
			return []string{"-sS", "--tftp-blksize", "1468", "-o", l, "tftp://127.0.0.1:" + port + "/" + r}
		}},
		{"tftp", func(port, r, l string) []string {
			return []string{"127.0.0.1", port, "-m", "binary", "-c", "get", r, l}
		}},
		{"atftp", func(port, r, l string) []string {
			return []string{"--option", "windowsize 4", "--option", "blksize 1024", "-g", "-r", r, "-l", l, "127.0.0.1", port}
		}},
		{"busybox", func(port, r, l string) []string {
			return []string{"tftp", "-b", "1468", "-g", "-r", r, "-l", l, "127.0.0.1", port}
		}},
	}
	want := map[string][]byte{}
	for i := range clients {
		name := "file" + strconv.Itoa(i) // one each: no shared read
		want[name] = randomFile(t, root, name, 512<<10+i)
	}
	// 32 reads of 16 KiB, 120 ms each: every transfer lasts about 4 s.
	be := startSDKBackend(t, nil, root, 120*time.Millisecond, backend.Config{ChunkSize: 16 << 10})
	r := gatewaytest.FreePortRange(t, 4)
	g := startGateway(t, "-backend", be.addr, "-cache-size", "0", "-port-range", r.String(), "-metrics", "127.0.0.1:0")
	maddr := metricsAddr(t, g)
	pid, port := g.cmd.Process.Pid, strconv.Itoa(g.port)
	allowed := func(p uint16) bool { return int(p) == g.port || r.Contains(p) }

	type result struct {
		name string
		out  []byte
		err  error
	}
	results := make(chan result, len(clients))
	var wg sync.WaitGroup
	var peers []*udpPeer // stand-ins for missing clients
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, c := range clients {
		name := "file" + strconv.Itoa(i)
		bin, err := exec.LookPath(c.bin)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; CI must install it (see .ci/run)", c.bin)
			}
			t.Logf("%s is not installed: a hand-driven client holds its session (make test installs it when run as root)", c.bin)
			p := newPeer(t)
			p.rrq(g.port, name)
			p.expectData(1)
			peers = append(peers, p)
			continue
		}
		local := filepath.Join(t.TempDir(), "out")
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.CommandContext(ctx, bin, c.argv(port, name, local)...).CombinedOutput()
			if err == nil {
				got, rerr := os.ReadFile(local)
				if rerr != nil || !bytes.Equal(got, want[name]) {
					err = fmt.Errorf("got %d bytes (%v), want %d", len(got), rerr, len(want[name]))
				}
			}
			results <- result{c.bin, out, err}
		}()
	}

	// The four sessions have their sockets: 4 ports of the range in use,
	// and never a UDP socket on another port than those and the
	// listening one.
	var inRange []uint16
	for range 500 {
		ports := udpPorts(t, pid)
		inRange = inRange[:0]
		for _, p := range ports {
			if !allowed(p) {
				t.Fatalf("a UDP socket of tftpgw on port %d, outside -port-range %v and the listening port %d (all: %v)", p, r, g.port, ports)
			}
			if r.Contains(p) {
				inRange = append(inRange, p)
			}
		}
		if len(inRange) == 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(inRange) != 4 {
		t.Fatalf("sockets on ports %v of the range, want 4 (one per session)\n%s", inRange, g.logText())
	}

	fifth := newPeer(t)
	fifth.rrq(g.port, "pxelinux.cfg/default")
	listening := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(g.port))
	if b := fifth.recv(5 * time.Second); !bytes.Equal(b, []byte("\x00\x05\x00\x00server busy\x00")) || fifth.tid != listening {
		t.Errorf("fifth client: got %q from %v, want ERROR 0 \"server busy\" from %v", b, fifth.tid, listening)
	}
	for _, p := range udpPorts(t, pid) {
		if !allowed(p) {
			t.Errorf("a UDP socket of tftpgw on port %d, outside -port-range %v and the listening port %d", p, r, g.port)
		}
	}

	wg.Wait()
	close(results)
	for res := range results {
		if res.err != nil {
			t.Errorf("%s: %v\n%s", res.name, res.err, res.out)
		}
	}
	for _, p := range peers {
		p.send(p.tid, []byte("\x00\x05\x00\x00bye\x00"))
	}
	m := scrapeMetrics(t, maddr)
	if m["tftpgw_ports_exhausted_total"] != 1 || m["tftpgw_busy_refusals_total"] != 1 {
		t.Errorf("tftpgw_ports_exhausted_total %v, tftpgw_busy_refusals_total %v; want 1, 1",
			m["tftpgw_ports_exhausted_total"], m["tftpgw_busy_refusals_total"])
	}
	if t.Failed() {
		t.Logf("-port-range %v; log:\n%s", r, g.logText())
	}
}
