package upload_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/upload"
)

// recorder is a write handler that keeps what reaches it.
type recorder struct {
	paths []string
	data  bytes.Buffer
	done  string // "commit" or "abort"
}

func (r *recorder) ReceiveTFTP(_ context.Context, req *gateway.Request) (gateway.Upload, error) {
	r.paths = append(r.paths, req.Path)
	return r, nil
}

func (r *recorder) Write(p []byte) (int, error) { return r.data.Write(p) }
func (r *recorder) Commit() error               { r.done = "commit"; return nil }
func (r *recorder) Abort()                      { r.done = "abort" }

var client4 = netip.MustParseAddrPort("192.168.0.1:2000")

func request(path string, client netip.AddrPort, opts ...gateway.Option) *gateway.Request {
	return &gateway.Request{Path: path, RawPath: path, Mode: "octet", Options: opts, RemoteAddr: client}
}

func TestPolicyAllow(t *testing.T) {
	for _, tt := range []struct {
		allow []string
		path  string
		ok    bool
	}{
		{nil, "f", false},
		{[]string{}, "a/b", false},
		{[]string{"**"}, "f", true},
		{[]string{"**"}, "a/b/c", true},
		{[]string{"*"}, "f", true},
		{[]string{"*"}, "a/f", false},
		{[]string{"configs/**"}, "configs/a/b.cfg", true},
		{[]string{"configs/**"}, "configs", true}, // ** matches zero elements
		{[]string{"configs/**"}, "other/configs/x", false},
		{[]string{"configs/*"}, "configs/a/b.cfg", false},
		{[]string{"logs/*.txt", "dumps/**"}, "logs/x.txt", true},
		{[]string{"logs/*.txt", "dumps/**"}, "dumps/y/z.bin", true},
		{[]string{"logs/*.txt", "dumps/**"}, "logs/x.bin", false},
		{[]string{"{a,b}/*"}, "b/f", true},
		{[]string{"{a,b}/*"}, "c/f", false},
		{[]string{"[0-9]*.cfg"}, "7.cfg", true},
		{[]string{"[0-9]*.cfg"}, "x.cfg", false},
		// The normalised path: no leading slash, no "..".
		{[]string{"etc/*"}, "/etc/x", true},
		{[]string{"a/*"}, "a/b/../c", true},
		{[]string{"b/*"}, "a/../../b/c", false},
	} {
		rec := &recorder{}
		p := &upload.Policy{Allow: tt.allow}
		_, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request(tt.path, client4))
		if tt.ok != (err == nil) || tt.ok != (len(rec.paths) == 1) {
			t.Errorf("Allow %q, path %q: %v, next saw %q; want allowed %v", tt.allow, tt.path, err, rec.paths, tt.ok)
		}
		if err != nil && code(err) != gateway.ErrAccessViolation {
			t.Errorf("Allow %q, path %q: ERROR %d, want 2", tt.allow, tt.path, code(err))
		}
	}
}

func TestPolicyMaxSizeDeclared(t *testing.T) {
	const max = 1000
	for _, tt := range []struct {
		tsize string
		ok    bool
	}{
		{"0", true},
		{"999", true},
		{"1000", true},
		{"1001", false},
		{"0001001", false},
		{"99999999999999999999999999", false}, // a number, if not an int64
		// Not a decimal number: ignored (the engine grants none).
		{"", true},
		{"abc", true},
		{"-5000", true},
		{"+5000", true},
		{"5000 ", true},
		{"0x5000", true},
	} {
		rec := &recorder{}
		p := &upload.Policy{Allow: []string{"**"}, MaxSize: max}
		_, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request("f", client4, gateway.Option{Name: "tsize", Value: tt.tsize}))
		if tt.ok != (err == nil) || tt.ok != (len(rec.paths) == 1) {
			t.Errorf("tsize %q: %v, next saw %q; want accepted %v", tt.tsize, err, rec.paths, tt.ok)
		}
		if !tt.ok && code(err) != gateway.ErrDiskFull {
			t.Errorf("tsize %q: ERROR %d, want 3", tt.tsize, code(err))
		}
	}
}

// TestPolicyMaxSizeUndeclared: without tsize (or with a smaller one), the
// Write that passes MaxSize fails with ERROR 3 and nothing of it reaches
// the next handler; MaxSize bytes exactly are stored.
func TestPolicyMaxSizeUndeclared(t *testing.T) {
	const max = 1024
	for _, tt := range []struct {
		name   string
		chunks []int
		tsize  string
		ok     bool
	}{
		{"exactly MaxSize in one write", []int{max}, "", true},
		{"exactly MaxSize in blocks", []int{512, 512}, "", true},
		{"exactly MaxSize then an empty write", []int{512, 512, 0}, "", true},
		{"one byte over in one write", []int{max + 1}, "", false},
		{"one byte over in a last block", []int{512, 512, 1}, "", false},
		{"declared small, sent more", []int{512, 512, 512}, "10", false},
		{"no limit", []int{max * 4}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			p := &upload.Policy{Allow: []string{"**"}, MaxSize: max}
			if tt.name == "no limit" {
				p.MaxSize = 0
			}
			var opts []gateway.Option
			if tt.tsize != "" {
				opts = append(opts, gateway.Option{Name: "tsize", Value: tt.tsize})
			}
			u, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request("f", client4, opts...))
			if err != nil {
				t.Fatal(err)
			}
			var werr error
			sent := 0
			for _, n := range tt.chunks {
				if _, werr = u.Write(bytes.Repeat([]byte{'x'}, n)); werr != nil {
					break
				}
				sent += n
			}
			if tt.ok {
				if werr != nil {
					t.Fatal(werr)
				}
				if err := u.Commit(); err != nil {
					t.Fatal(err)
				}
				if rec.data.Len() != sent || rec.done != "commit" {
					t.Errorf("next got %d bytes and %q, want %d and commit", rec.data.Len(), rec.done, sent)
				}
				return
			}
			if code(werr) != gateway.ErrDiskFull {
				t.Fatalf("the write over MaxSize: %v (ERROR %d), want ERROR 3", werr, code(werr))
			}
			if rec.data.Len() > max || rec.data.Len() != sent {
				t.Errorf("next got %d bytes, want the %d before the limit", rec.data.Len(), sent)
			}
			if _, err := u.Write([]byte{'x'}); code(err) != gateway.ErrDiskFull {
				t.Errorf("a write after the limit: %v", err)
			}
			if err := u.Commit(); code(err) != gateway.ErrDiskFull {
				t.Errorf("Commit after the limit: %v, want ERROR 3", err)
			}
			u.Abort()
			if rec.done != "abort" {
				t.Errorf("next's upload: %q, want abort", rec.done)
			}
		})
	}
}

func TestPolicyPathPlacement(t *testing.T) {
	for _, tt := range []struct {
		template, client, path, want string
	}{
		{"", "192.168.0.1:2000", "a/b", "a/b"},
		{"{path}", "192.168.0.1:2000", "/a//b", "a/b"},
		{"{client_ip}/{path}", "192.168.0.1:2000", "f", "192.168.0.1/f"},
		{"{client_ip}/{path}", "[::ffff:192.168.0.1]:2000", "f", "192.168.0.1/f"},
		{"{client_ip}/{path}", "[2001:db8::1]:2000", "f", "2001:db8::1/f"},
		{"{client_ip}/{path}", "[fe80::1%eth0]:2000", "f", "fe80::1/f"},
		{"{client_ip}/{path}", "[::1]:2000", "f", "::1/f"},
		{"hosts/{client_ip_hex}/{path}", "192.168.0.1:2000", "f", "hosts/C0A80001/f"},
		{"hosts/{client_ip_hex}/{path}", "[::ffff:192.168.0.1]:2000", "f", "hosts/C0A80001/f"},
		{"hosts/{client_ip_hex}/{path}", "[2001:db8::1]:2000", "f", "hosts/20010DB8000000000000000000000001/f"},
		{"in/{path}.{client_ip_hex}", "10.0.0.1:2000", "x/y.cfg", "in/x/y.cfg.0A000001"},
		{"{{literal}}/{path}", "10.0.0.1:2000", "f", "{literal}/f"},
		{"/up//./{path}", "10.0.0.1:2000", "f", "up/f"},
		{"a/b/../{path}", "10.0.0.1:2000", "f", "a/f"},
		// A placeholder in what the client sent is not expanded.
		{"{client_ip}/{path}", "10.0.0.1:2000", "{client_ip}", "10.0.0.1/{client_ip}"},
	} {
		rec := &recorder{}
		p := &upload.Policy{Allow: []string{"**"}, Path: tt.template}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		req := request(tt.path, netip.MustParseAddrPort(tt.client))
		if _, err := p.Wrap(rec).ReceiveTFTP(t.Context(), req); err != nil {
			t.Errorf("%q, %s, %q: %v", tt.template, tt.client, tt.path, err)
			continue
		}
		if len(rec.paths) != 1 || rec.paths[0] != tt.want || req.Path != tt.want {
			t.Errorf("%q, %s, %q: next saw %q, req.Path %q; want %q", tt.template, tt.client, tt.path, rec.paths, req.Path, tt.want)
		}
		if req.RawPath != tt.path {
			t.Errorf("RawPath changed to %q", req.RawPath)
		}
	}
}

// TestPolicyAllowMatchesTheRequestedPath: Allow sees the path the client
// asked for, not where Path places it.
func TestPolicyAllowMatchesTheRequestedPath(t *testing.T) {
	p := &upload.Policy{Allow: []string{"configs/*"}, Path: "hosts/{client_ip}/{path}"}
	rec := &recorder{}
	if _, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request("configs/a", client4)); err != nil {
		t.Fatal(err)
	}
	if rec.paths[0] != "hosts/192.168.0.1/configs/a" {
		t.Errorf("placed at %q", rec.paths[0])
	}
	if _, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request("hosts/192.168.0.1/configs/a", client4)); err == nil {
		t.Error("a path matching only after placement was allowed")
	}
}

func TestPolicyPathRefusesEscapes(t *testing.T) {
	for _, tt := range []struct {
		template, path string
		client         netip.AddrPort
	}{
		{"{path}/../..", "a", client4}, // Validate refuses it too
		{"{path}/../../..", "a/b", client4},
		{"{client_ip}/{path}", "f", netip.AddrPort{}}, // no address
		{"{client_ip_hex}/{path}", "f", netip.AddrPort{}},
		// Found by FuzzPolicyPlacementStaysInside: cleaned once, "\t\\" is
		// "\t", which a second cleaning would make empty.
		{"\t\\", "0", client4},
	} {
		rec := &recorder{}
		p := &upload.Policy{Allow: []string{"**"}, Path: tt.template}
		_, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request(tt.path, tt.client))
		if err == nil || code(err) != gateway.ErrAccessViolation || len(rec.paths) != 0 {
			t.Errorf("%q, %q: %v, next saw %q; want ERROR 2", tt.template, tt.path, err, rec.paths)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    upload.Policy
		want string // in the error; "" for none
	}{
		{"zero", upload.Policy{}, ""},
		{"typical", upload.Policy{Allow: []string{"**", "a/*.cfg", "{a,b}/[0-9]*"}, MaxSize: 1 << 20, Path: "{client_ip}/{path}"}, ""},
		{"literal braces", upload.Policy{Path: "{{x}}/{path}"}, ""},
		{"bad glob", upload.Policy{Allow: []string{"ok/*", "a/[b"}}, `Allow[1] "a/[b": bad pattern`},
		{"unclosed alternative", upload.Policy{Allow: []string{"{a,b"}}, `Allow[0]`},
		{"negative MaxSize", upload.Policy{MaxSize: -1}, "MaxSize -1"},
		{"unknown placeholder", upload.Policy{Path: "{client_mac}/{path}"}, "unknown placeholder {client_mac}"},
		{"unclosed brace", upload.Policy{Path: "{path"}, "not closed"},
		{"stray brace", upload.Policy{Path: "a}/{path}"}, "closes nothing"},
		{"escapes", upload.Policy{Path: "../{path}"}, "escapes"},
		{"empty result", upload.Policy{Path: "{path}/.."}, "empty"},
	} {
		err := tt.p.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	err := (&upload.Policy{Allow: []string{"["}, MaxSize: -1, Path: "{x}"}).Validate()
	if err == nil || strings.Count(err.Error(), "upload: ") != 3 {
		t.Errorf("every problem: %v", err)
	}
}

// TestPolicyInvalidRefusesEverything: a Policy that Validate refuses,
// wrapped anyway, lets no upload through.
func TestPolicyInvalidRefusesEverything(t *testing.T) {
	rec := &recorder{}
	p := &upload.Policy{Allow: []string{"**", "["}}
	_, err := p.Wrap(rec).ReceiveTFTP(t.Context(), request("f", client4))
	if err == nil || code(err) != gateway.ErrAccessViolation || len(rec.paths) != 0 {
		t.Errorf("%v, next saw %q", err, rec.paths)
	}
}

func TestPolicyWrapCopies(t *testing.T) {
	p := &upload.Policy{Allow: []string{"a"}}
	h := p.Wrap(&recorder{})
	p.Allow[0] = "b"
	p.Allow = append(p.Allow, "**")
	if _, err := h.ReceiveTFTP(t.Context(), request("a", client4)); err != nil {
		t.Errorf("a: %v", err)
	}
	if _, err := h.ReceiveTFTP(t.Context(), request("b", client4)); err == nil {
		t.Error("b allowed after Wrap")
	}
}

// TestPolicyWithDir: the policy's placement is where Dir stores.
func TestPolicyWithDir(t *testing.T) {
	root := t.TempDir()
	p := &upload.Policy{Allow: []string{"**"}, MaxSize: 10, Path: "{client_ip_hex}/{path}"}
	h := p.Wrap(&upload.Dir{Root: root})
	if err := store(t, h, "cfg", "0123456789"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, root+"/C0A80001/cfg"); got != "0123456789" {
		t.Errorf("stored %q", got)
	}
	if err := store(t, h, "big", "0123456789a"); code(err) != gateway.ErrDiskFull {
		t.Errorf("11 bytes: %v, want ERROR 3", err)
	}
	if names := files(t, root); len(names) != 2 {
		t.Errorf("files %q", names)
	}
}

// FuzzPolicyPlacementStaysInside: whatever the template, the path and the
// client, what reaches the next handler is clean and relative: no "..",
// no leading slash, no NUL, no empty element.
func FuzzPolicyPlacementStaysInside(f *testing.F) {
	for _, s := range []struct{ tmpl, path string }{
		{"{path}", "a/b"},
		{"{client_ip}/{path}", "../x"},
		{"up/{client_ip_hex}/{path}", `\..\..\etc\passwd`},
		{"{path}/../..", "a/b/c"},
		{"..{path}", "/.."},
		{"{{{path}}}", "x\x00y"},
	} {
		f.Add(s.tmpl, s.path, []byte{192, 0, 2, 1})
		f.Add(s.tmpl, s.path, netip.MustParseAddr("2001:db8::1").AsSlice())
	}
	f.Fuzz(func(t *testing.T, tmpl, path string, ip []byte) {
		a, _ := netip.AddrFromSlice(ip)
		p := &upload.Policy{Allow: []string{"**"}, Path: tmpl}
		rec := &recorder{}
		req := request(path, netip.AddrPortFrom(a, 69))
		if _, err := p.Wrap(rec).ReceiveTFTP(t.Context(), req); err != nil {
			if len(rec.paths) != 0 {
				t.Fatalf("refused (%v) but next was called", err)
			}
			return
		}
		got := rec.paths[0]
		if clean, err := gateway.CleanPath(got); err != nil || clean != got || strings.HasPrefix(got, "/") {
			t.Fatalf("template %q, path %q: placed at %q (clean: %q, %v)", tmpl, path, got, clean, err)
		}
		for e := range strings.SplitSeq(got, "/") {
			if e == ".." || e == "." || e == "" {
				t.Fatalf("template %q, path %q: placed at %q", tmpl, path, got)
			}
		}
	})
}
