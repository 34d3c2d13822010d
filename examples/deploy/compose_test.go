package deploy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads a compose file offline as docker compose does:
// compose-go validates it against the Compose Specification's JSON schema,
// interpolates, normalises, resolves paths and checks the references
// between services (depends_on, networks, volumes).
func loadCompose(t *testing.T, path string) (*types.Project, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	details, err := loader.LoadConfigFiles(ctx, []string{abs}, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	details.Environment = types.Mapping{} // nothing from this machine's environment
	return loader.LoadWithContext(ctx, *details, func(o *loader.Options) {
		o.ResolvePaths = true
	})
}

// flagValue returns the value of -name (as -name=V or -name V) in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
		if a == "-"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// hasFlag reports whether args set the boolean flag -name (to true).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if a == "-"+name || a == "-"+name+"=true" {
			return true
		}
	}
	return false
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// binaryOf returns which of the image's binaries a service runs: its
// entrypoint, or the image's (tftpgw).
func binaryOf(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	if len(s.Entrypoint) == 0 {
		return "tftpgw"
	}
	if len(s.Entrypoint) != 1 {
		t.Fatalf("service %s: entrypoint %q: want the binary alone", s.Name, s.Entrypoint)
	}
	name, ok := strings.CutPrefix(s.Entrypoint[0], "/usr/local/bin/")
	if !ok {
		t.Fatalf("service %s: entrypoint %q is not one of the image's binaries", s.Name, s.Entrypoint[0])
	}
	return name
}

func TestComposeFileIsValidAndConsistent(t *testing.T) {
	p, err := loadCompose(t, "compose.yaml")
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	root := repoRoot(t)
	byBinary := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Build == nil {
			t.Errorf("service %s has no build: the image is built here, never pulled", name)
		} else {
			if s.Build.Context != root {
				t.Errorf("service %s: build context %s, want the repository root %s", name, s.Build.Context, root)
			}
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if want, _ := filepath.Abs("Dockerfile"); df != want {
				t.Errorf("service %s: dockerfile %s, want %s", name, df, want)
			}
		}
		bin := binaryOf(t, s)
		byBinary[bin] = s
		if bad := checkArgs(t, bin, s.Command); len(bad) > 0 {
			t.Errorf("service %s: command: %s", name, strings.Join(bad, "; "))
		}
		for _, v := range s.Volumes {
			if _, err := os.Stat(v.Source); v.Type == types.VolumeTypeBind && err != nil {
				t.Errorf("service %s: volume %s: %v", name, v.Source, err)
			}
		}
		if !s.ReadOnly {
			t.Errorf("service %s: root file system not read_only", name)
		}
	}
	edge, backend, collector := byBinary["tftpgw"], byBinary["tftp-backend"], byBinary["tftp-collector"]
	if edge.Name == "" || backend.Name == "" || collector.Name == "" {
		t.Fatalf("compose.yaml: want an edge, a backend and a collector, have %v", p.ServiceNames())
	}

	// The edge's configuration is valid, and names the other two by their
	// service names and ports.
	checkTftpgw(t, edge.Command)
	listen, _ := flagValue(edge.Command, "listen")
	target, _ := flagValue(edge.Command, "backend")
	if want := "dns:///" + backend.Name + ":" + strconv.Itoa(listenPort(t, backend)); target != want {
		t.Errorf("edge -backend %q, want %q", target, want)
	}
	sink, _ := flagValue(edge.Command, "stats-sink")
	if want := collector.Name + ":" + strconv.Itoa(listenPort(t, collector)); sink != want {
		t.Errorf("edge -stats-sink %q, want %q", sink, want)
	}

	// Behind Docker's NAT the edge must answer from the published port.
	if !hasFlag(edge.Command, "single-port") {
		t.Error("edge runs without -single-port behind Docker's port publishing (NAT)")
	}
	published := false
	for _, port := range edge.Ports {
		if port.Protocol == "udp" && int(port.Target) == portOf(t, listen) {
			published = port.Published == "69"
		}
	}
	if !published {
		t.Errorf("edge: no UDP port 69 published to its -listen %s: %+v", listen, edge.Ports)
	}

	// The health check is a real read request to the edge, by tftpbench.
	hc := edge.HealthCheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/tftpbench" {
		t.Fatalf("edge health check %+v: want [CMD /usr/local/bin/tftpbench ...] (no shell in the image)", hc)
	}
	if bad := checkArgs(t, "tftpbench", hc.Test[2:]); len(bad) > 0 {
		t.Errorf("edge health check: %s", strings.Join(bad, "; "))
	}
	server, _ := flagValue(hc.Test[2:], "server")
	file, _ := flagValue(hc.Test[2:], "file")
	if portOf(t, server) != portOf(t, listen) {
		t.Errorf("edge health check asks %s, the edge listens on %s", server, listen)
	}
	for _, v := range backend.Volumes {
		if root, ok := flagValue(backend.Command, "root"); ok && v.Target == root {
			if _, err := os.Stat(filepath.Join(v.Source, file)); err != nil {
				t.Errorf("edge health check reads %s, which the backend's -root does not have: %v", file, err)
			}
		}
	}
}

// listenPort is the port of a service's -listen flag.
func listenPort(t *testing.T, s types.ServiceConfig) int {
	t.Helper()
	l, ok := flagValue(s.Command, "listen")
	if !ok {
		t.Fatalf("service %s has no -listen", s.Name)
	}
	return portOf(t, l)
}

// The loader's schema check can fail: a misspelled key or a wrong type is
// refused.
func TestComposeLoaderCatchesMistakes(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"misspelled key", "    read_only: true\n", "    read_only: true\n    readonly: true\n"},
		{"port of the wrong form", `"69:6969/udp"`, `"69:6969/udpp"`},
		{"dependency on a service that does not exist", "      - collector\n", "      - colector\n"},
		{"value of the wrong type", "stop_grace_period: 20s", "stop_grace_period: [20s]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("compose.yaml has no %q", tc.old)
			}
			p := filepath.Join(t.TempDir(), "compose.yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := loadCompose(t, p); err == nil {
				t.Errorf("compose-go accepted compose.yaml with a %s", tc.name)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}
