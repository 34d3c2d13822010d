package httpupstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
)

// repoTree serves DIR with the standard library's file server; the TFTP
// repository is DIR/pub/, and DIR/private/ must never be reachable.
func repoTree(t *testing.T) *Handler {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"pub/boot.cfg":       "public\n",
		"pub/50%off.cfg":     "discount\n",
		"private/secret.txt": "TOP SECRET\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	h, err := New(srv.URL+"/pub/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A TFTP path is a file name, not an escaped URL path: "%2e%2e" must be
// fetched as a file literally named "%2e%2e" (i.e. escaped as %252e%252e),
// never decoded into ".." by the upstream server, which would leave the
// repository's base path. The edge's CleanPath does not decode percent
// escapes, so this path reaches the backend as it is.
func TestPercentEncodedDotDotEscapesBase(t *testing.T) {
	h := repoTree(t)
	for _, p := range []string{"%2e%2e/private/secret.txt", "%2E%2E/private/secret.txt", "..%2fprivate%2fsecret.txt"} {
		c, err := h.ServeTFTP(t.Context(), &gateway.Request{Path: p})
		if err != nil {
			continue // refused or not found: fine
		}
		b, _ := io.ReadAll(c)
		c.Close()
		t.Errorf("path %q outside the repository base was served: %q", p, b)
	}
}

// A '%' in a file name that does not start a valid escape makes JoinPath
// drop the whole path, so the request fetches the base URL itself (here
// the directory listing of the repository) and serves it as the file.
func TestPercentInNameFetchesBase(t *testing.T) {
	h := repoTree(t)
	c, err := h.ServeTFTP(t.Context(), &gateway.Request{Path: "50%off.cfg"})
	if err != nil {
		t.Fatalf("50%%off.cfg: %v (the file exists upstream)", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "discount\n" {
		t.Errorf("50%%off.cfg served %q, want %q", b, "discount\n")
	}
	c, err = h.ServeTFTP(t.Context(), &gateway.Request{Path: "missing%zz"})
	if err == nil {
		b, _ := io.ReadAll(c)
		c.Close()
		t.Errorf("missing%%zz (no such file) served %q, want TFTP error 1", b)
	}
}
