package examples_test

// Per-client content (issue 18): each example backend (the Go one on the
// backend SDK, examples/go-backend; the Python and Node ones) answers a
// read of boot.ipxe with an iPXE script naming the client's address. They
// run behind the real tftpgw binary (-backend) with its edge cache on (the
// default), and clients on different loopback addresses, one after the
// other and at once, must each get their own script: the cache never
// serves one client's script to another.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// goExample is examples/go-backend, built by TestMain.
var goExample string

var goExampleBackend = backend{
	name:    "go-backend",
	missing: func() string { return "" },
	command: func(root, listen string, extra ...string) []string {
		return append([]string{goExample, "-root", root, "-listen", listen}, extra...)
	},
	serving: regexp.MustCompile(`go-backend serving.* addr=(\S+)`),
}

// scriptBackends are the example backends that make boot.ipxe, with the
// name each puts in its script.
var scriptBackends = []struct {
	b      backend
	banner string
}{
	{goExampleBackend, "go-backend"},
	{pythonBackend, "python-backend"},
	{nodeBackend, "node-backend"},
}

// bootScript is the script the example backends make for ip.
func bootScript(banner, ip string) string {
	return fmt.Sprintf("#!ipxe\necho Booting %[1]s through tftpgw (%[2]s)\n"+
		"chain --autofree tftp://${next-server}/hosts/%[1]s.ipxe || shell\n", ip, banner)
}

func TestBootScriptNamesTheClient(t *testing.T) {
	root := t.TempDir()
	hello := []byte("a file of the root, served as it is\n")
	mustWrite(t, filepath.Join(root, "hello.txt"), hello)
	for _, sb := range scriptBackends {
		t.Run(sb.b.name, func(t *testing.T) {
			t.Parallel()
			need(t, sb.b)
			p := start(t, sb.b, root, "127.0.0.1:0")
			// -cache-max-age gives content without a max_age a
			// freshness of its own: the scripts' explicit zero max_age
			// must still make the edge ask for every request.
			g := startTFTPGW(t, "-backend", p.addr, "-cache-max-age", "1m")
			if !strings.Contains(g.logs.String(), `"edge cache on"`) {
				t.Fatalf("tftpgw runs without its edge cache; the test needs it on:\n%s", g.logs)
			}

			t.Run("each client gets its own script through the edge cache", func(t *testing.T) {
				for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3", "127.0.0.2"} {
					checkScript(t, g.addr, ip, bootScript(sb.banner, ip))
				}
			})
			t.Run("clients asking at once get their own scripts", func(t *testing.T) {
				var wg sync.WaitGroup
				for i := range 12 {
					ip := fmt.Sprintf("127.0.0.%d", 2+i%6)
					wg.Go(func() { checkScript(t, g.addr, ip, bootScript(sb.banner, ip)) })
				}
				wg.Wait()
			})
			t.Run("other paths are files of the root", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
				defer cancel()
				var got bytes.Buffer
				if _, err := tftpclient.Get(ctx, g.addr, "hello.txt", &got, tftpclient.Options{TSize: true}); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), hello) {
					t.Errorf("hello.txt: got %q, want %q", got.Bytes(), hello)
				}
			})
			t.Run("curl as in the README", func(t *testing.T) {
				curl := needClient(t, "curl")
				ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
				defer cancel()
				out, err := exec.CommandContext(ctx, curl, "-sS", "--interface", "127.0.0.4",
					"tftp://"+g.addr+"/boot.ipxe").Output()
				if err != nil {
					t.Fatalf("curl: %v: %s", err, errOutput(err))
				}
				if want := bootScript(sb.banner, "127.0.0.4"); string(out) != want {
					t.Errorf("curl got:\n%s\nwant:\n%s", out, want)
				}
			})
			t.Run("the Read header suits per-client content", func(t *testing.T) { testScriptHeader(t, p.addr, sb.banner) })
		})
	}
}

// checkScript fetches boot.ipxe from the edge at addr as a client on ip,
// and checks that it is want, with want's size in the OACK.
func checkScript(t *testing.T, addr, ip, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
	defer cancel()
	var got bytes.Buffer
	res, err := tftpclient.Get(ctx, addr, "boot.ipxe", &got, tftpclient.Options{TSize: true, LocalAddr: netip.MustParseAddr(ip)})
	if err != nil {
		t.Errorf("client %s: get boot.ipxe: %v", ip, err)
		return
	}
	if got.String() != want {
		t.Errorf("client %s got:\n%s\nwant:\n%s", ip, got.String(), want)
	}
	if res.TSize != int64(len(want)) {
		t.Errorf("client %s: tsize %d, want %d", ip, res.TSize, len(want))
	}
}

// testScriptHeader calls the backend's Read for boot.ipxe directly: the
// header has the script's size, its digest, an etag that differs per
// client and max age 0; a resume (offset and if_match) gets the rest of
// the same script, a stale if_match FAILED_PRECONDITION.
func testScriptHeader(t *testing.T, addr, banner string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := tftpgwv1.NewContentServiceClient(conn)
	readScript := func(t *testing.T, ip string, offset uint64, ifMatch string) readResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), transferTimeout)
		defer cancel()
		req := &tftpgwv1.ReadRequest{Path: "boot.ipxe", PathBytes: []byte("boot.ipxe"), RawPath: "boot.ipxe",
			Mode: "octet", SessionId: "examples-test", Offset: offset, IfMatch: ifMatch}
		if ip != "" {
			req.Client = &tftpgwv1.Address{Ip: ip, Port: 1234}
		}
		return read(ctx, client, req)
	}

	etags := map[string]string{}
	for _, tt := range []struct{ name, ip, named string }{
		{"IPv4 client", "127.0.0.2", "127.0.0.2"},
		{"another IPv4 client", "127.0.0.3", "127.0.0.3"},
		{"IPv6 client", "::1", "::1"},
		{"IPv6 client with a zone (left out of the script)", "fe80::1%lo", "fe80::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := bootScript(banner, tt.named)
			r := readScript(t, tt.ip, 0, "")
			if r.err != nil {
				t.Fatalf("Read: %v", r.err)
			}
			h := r.header
			if string(r.data) != want {
				t.Errorf("got:\n%s\nwant:\n%s", r.data, want)
			}
			if h.Size == nil || h.GetSize() != int64(len(want)) {
				t.Errorf("header size %v (set: %t), want %d", h.GetSize(), h.Size != nil, len(want))
			}
			if sum := sha256.Sum256([]byte(want)); !bytes.Equal(h.GetSha256(), sum[:]) {
				t.Errorf("header sha256 %x, want %x", h.GetSha256(), sum)
			}
			if d := h.GetMaxAge().AsDuration(); d != 0 {
				t.Errorf("header max_age %v, want 0: the script differs per client", d)
			}
			if h.GetEtag() == "" {
				t.Fatal("header has no etag")
			}
			for ip, etag := range etags {
				if etag == h.GetEtag() {
					t.Errorf("etag %q for %s and for %s: the edge cache would take one's script for the other's", etag, ip, tt.ip)
				}
			}
			etags[tt.ip] = h.GetEtag()

			// The same client again: the same etag, so the edge cache
			// may serve its cached copy of these very bytes.
			if again := readScript(t, tt.ip, 0, ""); again.err != nil || again.header.GetEtag() != h.GetEtag() {
				t.Errorf("second Read: etag %q, err %v; want %q", again.header.GetEtag(), again.err, h.GetEtag())
			}
			resumed := readScript(t, tt.ip, 10, h.GetEtag())
			switch {
			case resumed.err != nil:
				t.Errorf("Read at offset 10 with if_match: %v", resumed.err)
			case resumed.header.Offset == nil || resumed.header.GetOffset() != 10:
				t.Errorf("resumed header offset %v (set: %t), want 10", resumed.header.GetOffset(), resumed.header.Offset != nil)
			case string(resumed.data) != want[10:]:
				t.Errorf("resumed data %q, want %q", resumed.data, want[10:])
			}
		})
	}
	t.Run("stale if_match is FAILED_PRECONDITION", func(t *testing.T) {
		r := readScript(t, "127.0.0.2", 10, etags["127.0.0.3"])
		if c := status.Code(r.err); c != codes.FailedPrecondition {
			t.Errorf("Read with another client's etag: %v, want FAILED_PRECONDITION", r.err)
		}
	})
	t.Run("request without a client address is NOT_FOUND", func(t *testing.T) {
		r := readScript(t, "", 0, "")
		if c := status.Code(r.err); c != codes.NotFound {
			t.Errorf("Read without client: %v, want NOT_FOUND", r.err)
		}
	})
}
