package rewrite_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
)

// memFS is a Handler over a map of files that counts what is asked of
// it. Its StatContent is used only through statFS.
type memFS struct {
	files  map[string]string
	errors map[string]error // paths that fail with an error other than not found
	// statUnsure makes statFS's StatContent fail for every path (the
	// "cannot tell" answer of FileServer on NFS).
	statUnsure bool

	mu     sync.Mutex
	opens  []string // paths ServeTFTP was called for
	stats  []string // paths StatContent was called for
	closes []string // paths whose content was closed
}

func (m *memFS) ServeTFTP(_ context.Context, req *gateway.Request) (gateway.Content, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opens = append(m.opens, req.Path)
	if err := m.errors[req.Path]; err != nil {
		return nil, err
	}
	data, ok := m.files[req.Path]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return &memContent{Content: gateway.BytesContent([]byte(data)), fs: m, path: req.Path}, nil
}

func (m *memFS) counts() (opens, stats, closes []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.opens), slices.Clone(m.stats), slices.Clone(m.closes)
}

type memContent struct {
	gateway.Content
	fs   *memFS
	path string
}

func (c *memContent) Close() error {
	c.fs.mu.Lock()
	c.fs.closes = append(c.fs.closes, c.path)
	c.fs.mu.Unlock()
	return c.Content.Close()
}

// statFS is a memFS that is a StatHandler.
type statFS struct{ *memFS }

func (s statFS) StatContent(_ context.Context, req *gateway.Request) (int64, gateway.ContentInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = append(s.stats, req.Path)
	data, ok := s.files[req.Path]
	if !ok || s.statUnsure {
		return 0, gateway.ContentInfo{}, fs.ErrNotExist
	}
	return int64(len(data)), gateway.ContentInfo{}, nil
}

var _ gateway.StatHandler = statFS{}

// serve runs req through h and returns the content's bytes, closing it.
func serve(t *testing.T, h gateway.Handler, req *gateway.Request) (string, error) {
	t.Helper()
	c, err := h.ServeTFTP(context.Background(), req)
	if err != nil {
		if c != nil {
			t.Error("ServeTFTP returned content with an error")
		}
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func TestMiddlewareSetsPathInPlace(t *testing.T) {
	rw := mustNew(t, exampleRules)
	req := request("BOOT/PXELINUX.CFG/DEFAULT", "192.0.2.7")
	req.Path = "boot/PXELINUX.CFG/DEFAULT"
	var seen *gateway.Request
	var seenPath string
	next := gateway.HandlerFunc(func(_ context.Context, r *gateway.Request) (gateway.Content, error) {
		if r.Path != "pxelinux.cfg/default" {
			return nil, fs.ErrNotExist // the if_exists check for hosts/...
		}
		seen, seenPath = r, r.Path
		return gateway.BytesContent([]byte("menu")), nil
	})
	h := gateway.Chain(next, rw.Middleware())
	if _, err := serve(t, h, req); err != nil {
		t.Fatal(err)
	}
	if seen != req {
		t.Error("next was called with another *Request than the middleware's")
	}
	if seenPath != "pxelinux.cfg/default" || req.Path != "pxelinux.cfg/default" {
		t.Errorf("next saw Path %q, the request has %q after; want pxelinux.cfg/default", seenPath, req.Path)
	}
	if req.RawPath != "BOOT/PXELINUX.CFG/DEFAULT" {
		t.Errorf("RawPath changed to %q", req.RawPath)
	}
}

func TestMiddlewareDeny(t *testing.T) {
	custom := &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
	rw := mustNew(t, []rewrite.Rule{
		{Match: `^boot/(.*)$`, Replace: "$1"},
		{Match: `^secret/`, Deny: true},
		{Match: `\.key$`, Deny: true, Error: custom},
	})
	called := false
	next := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) {
		called = true
		return gateway.BytesContent(nil), nil
	})
	h := gateway.Chain(next, rw.Middleware())
	for _, tt := range []struct {
		path     string
		want     gateway.Error
		wantPath string // req.Path after the refusal
	}{
		{"boot/secret/x", gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}, "secret/x"},
		{"host.key", *custom, "host.key"},
	} {
		req := request(tt.path, "192.0.2.7")
		_, err := serve(t, h, req)
		if e := gateway.ErrorFor(err); err == nil || *e != tt.want {
			t.Errorf("%s: error %v (client gets %v), want %v", tt.path, err, e, tt.want)
		}
		if req.Path != tt.wantPath {
			t.Errorf("%s: Path after the refusal is %q, want %q", tt.path, req.Path, tt.wantPath)
		}
	}
	if called {
		t.Error("next was called for a denied request")
	}
}

func TestMiddlewareWithoutRulesIsNext(t *testing.T) {
	rw := mustNew(t, nil)
	next := &memFS{}
	if h := rw.Middleware()(next); h != gateway.Handler(next) {
		t.Errorf("Middleware of no rules wraps next: %T", h)
	}
}

// writeTree creates files (path -> content) under a new directory, every
// file readable and every directory searchable by anyone (FileServer
// running as root serves only those).
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMiddlewareFileServer serves a directory through the documentation's
// rules, with FileServer as next and with a plain handler that opens with
// FileServer but is not a StatHandler.
func TestMiddlewareFileServer(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"x":                                      "x",
		"pxelinux.cfg/default":                   "shared menu",
		"hosts/192.0.2.7/pxelinux.cfg/default":   "menu of 192.0.2.7",
		"hosts/2001:db8::7/pxelinux.cfg/default": "menu of 2001:db8::7",
		"secret/key":                             "secret",
	})
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	fsrv := gateway.FileServer(root)
	plain := gateway.HandlerFunc(fsrv.ServeTFTP)
	rw := mustNew(t, exampleRules)

	tests := []struct {
		name, path, client string
		want               string
		wantPath           string
		wantErr            gateway.ErrorCode // if want is ""
	}{
		{"boot/x is served as x", "boot/x", "192.0.2.8", "x", "x", 0},
		{"PXELINUX.CFG/DEFAULT is served as pxelinux.cfg/default", "PXELINUX.CFG/DEFAULT", "192.0.2.8", "shared menu", "pxelinux.cfg/default", 0},
		{"per-client file is used when present", "PXELINUX.CFG/DEFAULT", "192.0.2.7", "menu of 192.0.2.7", "hosts/192.0.2.7/pxelinux.cfg/default", 0},
		{"per-client file of an IPv4-mapped client", "pxelinux.cfg/default", "::ffff:192.0.2.7", "menu of 192.0.2.7", "hosts/192.0.2.7/pxelinux.cfg/default", 0},
		{"per-client file of an IPv6 client", "pxelinux.cfg/default", "2001:db8::7", "menu of 2001:db8::7", "hosts/2001:db8::7/pxelinux.cfg/default", 0},
		{"falls back when the per-client file is missing", "pxelinux.cfg/default", "2001:db8::8", "shared menu", "pxelinux.cfg/default", 0},
		{"missing everywhere is file not found", "nothing", "192.0.2.7", "", "nothing", gateway.ErrFileNotFound},
		{"deny", "boot/secret/key", "192.0.2.7", "", "secret/key", gateway.ErrAccessViolation},
	}
	for _, next := range []struct {
		name string
		h    gateway.Handler
	}{{"FileServer", fsrv}, {"plain handler", plain}} {
		if _, ok := next.h.(gateway.StatHandler); ok != (next.name == "FileServer") {
			t.Fatalf("%s: StatHandler is %v", next.name, ok)
		}
		h := gateway.Chain(next.h, rw.Middleware())
		for _, tt := range tests {
			t.Run(next.name+"/"+tt.name, func(t *testing.T) {
				req := request(tt.path, tt.client)
				got, err := serve(t, h, req)
				switch {
				case tt.want == "" && (err == nil || gateway.ErrorFor(err).Code != tt.wantErr):
					t.Errorf("got %q, %v; want error code %d", got, err, tt.wantErr)
				case tt.want != "" && (err != nil || got != tt.want):
					t.Errorf("got %q, %v; want %q", got, err, tt.want)
				}
				if req.Path != tt.wantPath {
					t.Errorf("Path %q, want %q", req.Path, tt.wantPath)
				}
			})
		}
	}
}

// TestMiddlewareEscape: a malicious rule aims at a file beside the root;
// the request is refused and next never sees the path.
func TestMiddlewareEscape(t *testing.T) {
	parent := writeTree(t, map[string]string{"root/x": "x", "outside/secret": "secret"})
	root, err := os.OpenRoot(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var asked []string
	fsrv := gateway.FileServer(root)
	next := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		asked = append(asked, req.Path)
		return fsrv.ServeTFTP(ctx, req)
	})
	for _, tt := range []struct {
		rule rewrite.Rule
		path string
	}{
		{rewrite.Rule{Match: `^(.*)$`, Replace: "../outside/$1"}, "secret"},
		{rewrite.Rule{Match: `^(.*)$`, Replace: `x\..\..\outside\$1`}, "secret"},
		{rewrite.Rule{Match: `^(.*)$`, Replace: "../outside/$1", IfExists: true}, "secret"},
		{rewrite.Rule{Match: `^d(.*)/(.*)$`, Replace: "$1$1/outside/$2"}, "d./secret"}, // the client sends the dot
	} {
		h := gateway.Chain(next, mustNew(t, []rewrite.Rule{tt.rule}).Middleware())
		req := request(tt.path, "192.0.2.7")
		got, err := serve(t, h, req)
		if e := gateway.ErrorFor(err); err == nil || e.Code != gateway.ErrAccessViolation {
			t.Errorf("%+v: got %q, %v; want access violation", tt.rule, got, err)
		}
		if req.Path != tt.path {
			t.Errorf("%+v: Path %q after the refusal, want %q unchanged", tt.rule, req.Path, tt.path)
		}
	}
	if len(asked) != 0 {
		t.Errorf("next was asked for %q", asked)
	}
}

// TestIfExistsOpens counts what each request asks of next: a check's
// content is returned rather than opened again, and closed when a later
// rule moves away from it.
func TestIfExistsOpens(t *testing.T) {
	files := map[string]string{
		"hosts/192.0.2.7/menu": "own menu",
		"menu":                 "shared menu",
		"hosts/192.0.2.7/new":  "own new",
		"new":                  "shared new",
		"other":                "other",
	}
	perClient := rewrite.Rule{Match: `^(.*)$`, Replace: "hosts/{client_ip}/$1", IfExists: true}
	tests := []struct {
		name       string
		rules      []rewrite.Rule
		stat       bool // next is a StatHandler
		statUnsure bool // whose StatContent cannot tell
		client     string
		want       string
		opens      []string
		stats      []string
		closes     []string // besides the returned content's
	}{
		{
			name: "plain: present per-client file is opened once", rules: []rewrite.Rule{perClient},
			client: "192.0.2.7", want: "own menu",
			opens: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name: "plain: missing per-client file costs a failed open and the fallback's", rules: []rewrite.Rule{perClient},
			client: "192.0.2.8", want: "shared menu",
			opens: []string{"hosts/192.0.2.8/menu", "menu"},
		},
		{
			name: "stat: present per-client file is stat'ed and opened", rules: []rewrite.Rule{perClient},
			stat: true, client: "192.0.2.7", want: "own menu",
			stats: []string{"hosts/192.0.2.7/menu"}, opens: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name: "stat: missing per-client file is stat'ed, then opened to be sure", rules: []rewrite.Rule{perClient},
			stat: true, client: "192.0.2.8", want: "shared menu",
			stats: []string{"hosts/192.0.2.8/menu"}, opens: []string{"hosts/192.0.2.8/menu", "menu"},
		},
		{
			name: "stat that cannot tell: the check's open is the answer", rules: []rewrite.Rule{perClient},
			stat: true, statUnsure: true, client: "192.0.2.7", want: "own menu",
			stats: []string{"hosts/192.0.2.7/menu"}, opens: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name:   "a later rule that changes the path closes the check's content",
			rules:  []rewrite.Rule{perClient, {Match: `^hosts/[^/]+/menu$`, Replace: "other"}},
			client: "192.0.2.7", want: "other",
			opens: []string{"hosts/192.0.2.7/menu", "other"}, closes: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name:   "a later rule that leaves the path keeps the check's content",
			rules:  []rewrite.Rule{perClient, {Match: `^menu$`, Replace: "other"}, {Match: `^(.*)$`, Replace: "$1", Lowercase: true}},
			client: "192.0.2.7", want: "own menu",
			opens: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name:   "a later deny closes the check's content",
			rules:  []rewrite.Rule{perClient, {Match: `^hosts/`, Deny: true}},
			client: "192.0.2.7",
			opens:  []string{"hosts/192.0.2.7/menu"}, closes: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name:   "a second if_exists rule that finds its file closes the first's",
			rules:  []rewrite.Rule{perClient, {Match: `/menu$`, Replace: "/new", IfExists: true}},
			client: "192.0.2.7", want: "own new",
			opens: []string{"hosts/192.0.2.7/menu", "hosts/192.0.2.7/new"}, closes: []string{"hosts/192.0.2.7/menu"},
		},
		{
			name:   "a second if_exists rule that falls back keeps the first's",
			rules:  []rewrite.Rule{perClient, {Match: `/menu$`, Replace: "/gone", IfExists: true}},
			client: "192.0.2.7", want: "own menu",
			opens: []string{"hosts/192.0.2.7/menu", "hosts/192.0.2.7/gone"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memFS{files: files, statUnsure: tt.statUnsure}
			var next gateway.Handler = m
			if tt.stat {
				next = statFS{m}
			}
			h := gateway.Chain(next, mustNew(t, tt.rules).Middleware())
			got, err := serve(t, h, request("menu", tt.client))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %q, want a refusal", got)
				}
			} else if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			opens, stats, closes := m.counts()
			if tt.want != "" { // serve closed the returned content last
				if len(closes) == 0 || files[closes[len(closes)-1]] != tt.want {
					t.Errorf("closes %q: the returned content was not closed last", closes)
				} else {
					closes = closes[:len(closes)-1]
				}
			}
			if !slices.Equal(opens, tt.opens) {
				t.Errorf("opened %q, want %q", opens, tt.opens)
			}
			if !slices.Equal(stats, tt.stats) {
				t.Errorf("stat'ed %q, want %q", stats, tt.stats)
			}
			if !slices.Equal(closes, tt.closes) {
				t.Errorf("closed %q before the end, want %q", closes, tt.closes)
			}
		})
	}
}

// TestIfExistsError: an error other than not found is the request's, not
// a fallback, and the content an earlier check held is closed.
func TestIfExistsError(t *testing.T) {
	denied := &gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}
	down := errors.New("backend down")
	for _, tt := range []struct {
		name string
		err  error
		want *gateway.Error
	}{
		{"access violation", denied, denied},
		{"other error", down, &gateway.Error{Code: gateway.ErrNotDefined, Message: "internal error"}},
		{"timeout", context.DeadlineExceeded, &gateway.Error{Code: gateway.ErrNotDefined, Message: "timeout"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &memFS{
				files:  map[string]string{"shared/menu": "shared", "hosts/192.0.2.7/menu": "own"},
				errors: map[string]error{"hosts/192.0.2.7/menu": tt.err},
			}
			rules := []rewrite.Rule{
				{Match: `^(.*)$`, Replace: "shared/$1", IfExists: true},
				{Match: `^shared/(.*)$`, Replace: "hosts/{client_ip}/$1", IfExists: true},
			}
			h := gateway.Chain(m, mustNew(t, rules).Middleware())
			req := request("menu", "192.0.2.7")
			got, err := serve(t, h, req)
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			if !errors.Is(err, tt.err) || *gateway.ErrorFor(err) != *tt.want {
				t.Errorf("error %v (client gets %v), want %v wrapped (client gets %v)", err, gateway.ErrorFor(err), tt.err, tt.want)
			}
			opens, _, closes := m.counts()
			if !slices.Equal(opens, []string{"shared/menu", "hosts/192.0.2.7/menu"}) {
				t.Errorf("opened %q", opens)
			}
			if !slices.Equal(closes, []string{"shared/menu"}) {
				t.Errorf("closed %q, want [shared/menu]", closes)
			}
			if req.Path != "shared/menu" {
				t.Errorf("Path %q after the error, want shared/menu (the path reached)", req.Path)
			}
		})
	}
}

// TestIfExistsPanic: a panic in next during a later check still closes
// the content an earlier check held (the server recovers the panic).
func TestIfExistsPanic(t *testing.T) {
	m := &memFS{files: map[string]string{"shared/menu": "shared"}}
	next := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		if req.Path == "boom/shared/menu" {
			panic("handler bug")
		}
		return m.ServeTFTP(ctx, req)
	})
	rules := []rewrite.Rule{
		{Match: `^(.*)$`, Replace: "shared/$1", IfExists: true},
		{Match: `^`, Replace: "boom/", IfExists: true},
	}
	h := gateway.Chain(next, mustNew(t, rules).Middleware())
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		h.ServeTFTP(context.Background(), request("menu", "192.0.2.7"))
	}()
	if _, _, closes := m.counts(); !slices.Equal(closes, []string{"shared/menu"}) {
		t.Errorf("closed %q, want [shared/menu]", closes)
	}
}
