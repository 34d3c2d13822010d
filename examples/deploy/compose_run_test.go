package deploy

import (
	"bytes"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// freeTCPPort returns a TCP port of 127.0.0.1 that was free a moment ago
// and that no other call of this test binary has returned.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	return newPort(t, func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	})
}

// handedOut are the ports freeTCPPort and freeUDPPort have returned: the
// kernel may give a port just closed again, and two listeners of one test
// then collide (a regression: a collector's -listen and -metrics got the
// same port, and it failed to start).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// newPort returns a port from pick that was not returned before.
func newPort(t *testing.T, pick func() int) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		if p := pick(); !handedOut.ports[p] {
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatal("no new free port in 100 tries")
	return 0
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// onLoopback rewrites a service's command for this machine, the way the
// compose network and the volumes would resolve it: each key of addrs
// (a "-flag=:PORT" listener, or a "SERVICE:PORT" target) becomes its
// loopback address, and container paths the volumes' sources.
func onLoopback(args []string, s types.ServiceConfig, addrs map[string]string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		for from, to := range addrs {
			a = strings.ReplaceAll(a, from, to)
		}
		for _, v := range s.Volumes {
			a = strings.ReplaceAll(a, "="+v.Target, "="+v.Source)
		}
		out = append(out, a)
	}
	return out
}

// The three services of compose.yaml, run as processes with their own
// command lines (addresses and volumes mapped to this machine): the
// edge's health check, a real read request, succeeds through the backend,
// and the collector receives that session.
func TestComposeServicesServeTogetherOnLoopback(t *testing.T) {
	p, err := loadCompose(t, "compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]types.ServiceConfig{}
	for _, s := range p.Services {
		services[binaryOf(t, s)] = s
	}
	edge, backend, collector := services["tftpgw"], services["tftp-backend"], services["tftp-collector"]

	// Each listener of a service (":PORT" in its command) gets a loopback
	// port of its own (own[service]); other services reach it by
	// SERVICE:PORT (targets).
	own := map[string]map[string]string{}
	targets := map[string]string{}
	edgeUDP := ""
	for _, s := range []types.ServiceConfig{edge, backend, collector} {
		for _, flag := range []string{"listen", "metrics"} {
			v, ok := flagValue(s.Command, flag)
			if !ok || !strings.HasPrefix(v, ":") {
				continue
			}
			port := freeTCPPort(t)
			if s.Name == edge.Name && flag == "listen" {
				port = freeUDPPort(t)
				edgeUDP = "127.0.0.1:" + strconv.Itoa(port)
			}
			local := "127.0.0.1:" + strconv.Itoa(port)
			if own[s.Name] == nil {
				own[s.Name] = map[string]string{}
			}
			own[s.Name]["-"+flag+"="+v] = "-" + flag + "=" + local
			targets[s.Name+v] = local
		}
	}
	if edgeUDP == "" {
		t.Fatal("the edge has no -listen=:PORT")
	}

	bin := built(t)
	start := func(s types.ServiceConfig, binary string) *lockedBuffer {
		return startProcess(t, binary, onLoopback(onLoopback(s.Command, s, own[s.Name]), s, targets))
	}
	collected := start(collector, "tftp-collector")
	start(backend, "tftp-backend")
	start(edge, "tftpgw")

	// The health check, as compose runs it, pointed at the edge's port.
	hc := edge.HealthCheck.Test[2:]
	check := onLoopback(hc, edge, map[string]string{})
	for i, a := range check {
		if a == "-server" && i+1 < len(check) {
			check[i+1] = edgeUDP
		}
	}
	file, _ := flagValue(check, "file")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, code := run(t, "", nil, filepath.Join(bin, "tftpbench"), check...)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge's health check still fails after 20 s:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for !strings.Contains(collected.String(), `"`+file+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector received no session for %s within 20 s:\n%s", file, collected.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
