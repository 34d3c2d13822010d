package templates

import (
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

func render(t *testing.T, h *Handler, req *gateway.Request) (string, error) {
	t.Helper()
	c, err := h.ServeTFTP(t.Context(), req)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != c.Size() {
		t.Errorf("size %d, read %d bytes", c.Size(), len(b))
	}
	if ic, ok := c.(gateway.InfoContent); !ok || ic.Info().ETag == "" {
		t.Errorf("no etag")
	}
	return string(b), nil
}

func request(p string) *gateway.Request {
	return &gateway.Request{
		Path:       p,
		RawPath:    p,
		Mode:       "octet",
		RemoteAddr: netip.MustParseAddrPort("192.0.2.7:2070"),
		LocalAddr:  netip.MustParseAddrPort("192.0.2.1:69"),
		Options:    []gateway.Option{{Name: "blksize", Value: "1468"}},
	}
}

// The sample templates in examples/templates, rendered for one client.
func TestExampleTemplates(t *testing.T) {
	h, err := New(filepath.Join("..", "..", "..", "..", "examples", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct{ path, want string }{
		{"grub.cfg-01-aa-bb-cc-dd-ee-ff", `# grub.cfg for aa:bb:cc:dd:ee:ff, rendered by tftp-backend
set default=0
set timeout=5
menuentry "Install on aa:bb:cc:dd:ee:ff" {
	linux /images/vmlinuz ip=192.0.2.7::192.0.2.1:255.255.255.0::: console=ttyS0
	initrd /images/initrd.img
}
`},
		{"pxelinux.cfg/01-AA-BB-CC-DD-EE-FF", `DEFAULT install
LABEL install
  KERNEL images/vmlinuz
  APPEND initrd=images/initrd.img ip=192.0.2.7::192.0.2.1:255.255.255.0 BOOTIF=01-aa:bb:cc:dd:ee:ff blksize=1468
`},
		{"pxelinux.cfg/default", "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"},
	} {
		got, err := render(t, h, request(tc.path))
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", tc.path, got, tc.want)
		}
	}
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSelection(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff.tmpl", "exact {{.MAC}}")
	write(t, dir, "pxelinux.cfg/01-{mac}.tmpl", "any mac {{.MAC}}")
	write(t, dir, "ipxe/default.tmpl", "default {{.MAC}} {{.Path}}")
	write(t, dir, "data.tmpl", "{{.ClientIP}}:{{.ClientPort}} {{.LocalIP}}:{{.LocalPort}} {{.Mode}} {{.RawPath}} [{{.Options.blksize}}][{{.Options.missing}}] [{{.MAC}}]")
	write(t, dir, "bad-parse.tmpl", "{{.Nope")
	write(t, dir, "bad-exec.tmpl", "{{.Nope}}")
	h, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	for _, tc := range []struct {
		path, want string
		notFound   bool
	}{
		{path: "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff", want: "exact aa:bb:cc:dd:ee:ff"},
		{path: "pxelinux.cfg/01-00-11-22-33-44-55", want: "any mac 00:11:22:33:44:55"},
		{path: "ipxe/boot-00:11:22:33:44:5a.ipxe", want: "default 00:11:22:33:44:5a ipxe/boot-00:11:22:33:44:5a.ipxe"},
		{path: "data", want: "192.0.2.7:2070 192.0.2.1:69 octet data [1468][] []"},
		{path: "ipxe/boot.ipxe", notFound: true},          // default.tmpl only for names with a MAC
		{path: "pxelinux.cfg/C000020A", notFound: true},   // no template
		{path: "pxelinux.cfg/01-{mac}", want: "any mac "}, // the template's own name
		{path: "nodir/x", notFound: true},
		{path: "data.tmpl/x", notFound: true},
	} {
		got, err := render(t, h, request(tc.path))
		switch {
		case tc.notFound:
			if !errors.Is(err, fs.ErrNotExist) || gateway.ErrorFor(err).Code != gateway.ErrFileNotFound {
				t.Errorf("%s: err = %v, want not found", tc.path, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case got != tc.want:
			t.Errorf("%s: got %q, want %q", tc.path, got, tc.want)
		}
	}

	for _, p := range []string{"bad-parse", "bad-exec"} {
		_, err := render(t, h, request(p))
		if err == nil || gateway.ErrorFor(err).Code != gateway.ErrNotDefined {
			t.Errorf("%s: err = %v, want a generic error", p, err)
		}
		if te := gateway.ErrorFor(err); te.Message != "internal error" {
			t.Errorf("%s: message %q leaks details", p, te.Message)
		}
	}
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "x.tmpl", "one")
	h, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got, _ := render(t, h, request("x")); got != "one" {
		t.Fatalf("got %q", got)
	}
	write(t, dir, "x.tmpl", "two!")
	// Make sure the modification time differs even on coarse clocks.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "x.tmpl"), future, future); err != nil {
		t.Fatal(err)
	}
	if got, _ := render(t, h, request("x")); got != "two!" {
		t.Fatalf("after change: got %q", got)
	}
}

func TestEscape(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write(t, outside, "secret.tmpl", "secret")
	if err := os.Symlink(filepath.Join(outside, "secret.tmpl"), filepath.Join(dir, "link.tmpl")); err != nil {
		t.Fatal(err)
	}
	h, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, p := range []string{"link", "../" + filepath.Base(outside) + "/secret"} {
		if got, err := render(t, h, request(p)); err == nil {
			t.Errorf("%s: served %q", p, got)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		name, mac string
		start     int
	}{
		{"01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 3},
		{"grub.cfg-01-AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff", 12},
		{"aa:bb:cc:dd:ee:ff.ipxe", "aa:bb:cc:dd:ee:ff", 0},
		{"aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 0},
		{"aa-bb-cc:dd-ee-ff", "aa:bb:cc:dd:ee:ff", 0},
		{"pxe-01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 7},
		{"aa-bb-cc-dd-ee", "", 0},
		{"x.aa-bb-cc-dd-ee-ff_y", "aa:bb:cc:dd:ee:ff", 2},
		{"aa-bb-cc-dd-ee-fff", "", 0},
		{"aa-bb-cc-dd-ee-ff-00-11", "", 0},
		{"00-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 3},
		{"x-01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 5},
		{"1-01-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 5},
		{"001-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff", 4},
		{"C000020A", "", 0},
		{"default", "", 0},
		{"", "", 0},
	} {
		mac, start, end, ok := ParseMAC(tc.name)
		if mac != tc.mac || ok != (tc.mac != "") || (ok && (start != tc.start || end != tc.start+17)) {
			t.Errorf("ParseMAC(%q) = %q %d %d %v, want %q at %d", tc.name, mac, start, end, ok, tc.mac, tc.start)
		}
	}
}

func TestCandidates(t *testing.T) {
	names, mac := Candidates("pxelinux.cfg/01-aa-bb-cc-dd-ee-ff")
	want := []string{"pxelinux.cfg/01-aa-bb-cc-dd-ee-ff.tmpl", "pxelinux.cfg/01-{mac}.tmpl", "pxelinux.cfg/default.tmpl"}
	if !slices.Equal(names, want) || mac != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("got %q %q", names, mac)
	}
	names, mac = Candidates("grub.cfg")
	if !slices.Equal(names, []string{"grub.cfg.tmpl"}) || mac != "" {
		t.Errorf("got %q %q", names, mac)
	}
}
