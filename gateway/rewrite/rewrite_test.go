package rewrite_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
)

// exampleRules are the rules of the package documentation.
var exampleRules = []rewrite.Rule{
	{Match: `^/?boot/(.*)$`, Replace: "$1"},
	{Match: `(?i)^pxelinux\.cfg/(.*)$`, Replace: "pxelinux.cfg/$1", Lowercase: true},
	{Match: `^(.*)$`, Replace: "hosts/{client_ip}/$1", IfExists: true},
	{Match: `\.\./|^secret/`, Deny: true},
}

func mustNew(t testing.TB, rules []rewrite.Rule) *rewrite.Rewriter {
	t.Helper()
	rw, err := rewrite.New(rules)
	if err != nil {
		t.Fatal(err)
	}
	return rw
}

// request is a request for path from client (an address, port 1024).
func request(path, client string) *gateway.Request {
	var a netip.Addr
	if client != "" {
		a = netip.MustParseAddr(client)
	}
	return &gateway.Request{Path: path, RawPath: path, Mode: "octet", RemoteAddr: netip.AddrPortFrom(a, 1024)}
}

// existIn answers Rewrite's existence checks from a set of paths.
func existIn(paths ...string) func(string) (bool, error) {
	return func(p string) (bool, error) {
		for _, q := range paths {
			if p == q {
				return true, nil
			}
		}
		return false, nil
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name   string
		rules  []rewrite.Rule
		path   string
		client string
		exists []string
		want   string
	}{
		{
			name: "boot/x is served as x", rules: exampleRules,
			path: "boot/x", client: "192.0.2.7", want: "x",
		},
		{
			name: "PXELINUX.CFG/DEFAULT is served as pxelinux.cfg/default", rules: exampleRules,
			path: "PXELINUX.CFG/DEFAULT", client: "192.0.2.7", want: "pxelinux.cfg/default",
		},
		{
			name: "boot prefix and case together", rules: exampleRules,
			path: "boot/PXELinux.cfg/C0A80001", client: "192.0.2.7", want: "pxelinux.cfg/c0a80001",
		},
		{
			name: "per-client file used when it exists", rules: exampleRules,
			path: "pxelinux.cfg/default", client: "192.0.2.7",
			exists: []string{"hosts/192.0.2.7/pxelinux.cfg/default"},
			want:   "hosts/192.0.2.7/pxelinux.cfg/default",
		},
		{
			name: "per-client file of another client is not used", rules: exampleRules,
			path: "pxelinux.cfg/default", client: "192.0.2.8",
			exists: []string{"hosts/192.0.2.7/pxelinux.cfg/default"},
			want:   "pxelinux.cfg/default",
		},
		{
			name: "unmatched path is unchanged", rules: []rewrite.Rule{{Match: `^boot/`, Replace: ""}},
			path: "kernel", want: "kernel",
		},
		{
			name: "only the leftmost match is replaced", rules: []rewrite.Rule{{Match: `a`, Replace: "b"}},
			path: "aaa", want: "baa",
		},
		{
			name: "text around the match is kept", rules: []rewrite.Rule{{Match: `old`, Replace: "new"}},
			path: "x/old/y", want: "x/new/y",
		},
		{
			name: "empty match at ^ prepends", rules: []rewrite.Rule{{Match: `^`, Replace: "tftp/"}},
			path: "x", want: "tftp/x",
		},
		{
			name: "empty replace deletes the match", rules: []rewrite.Rule{{Match: `^boot/`}},
			path: "boot/x", want: "x",
		},
		{
			name: "$0 is the whole match", rules: []rewrite.Rule{{Match: `^[a-z]+`, Replace: "$0-$0"}},
			path: "ab/c", want: "ab-ab/c",
		},
		{
			name: "${1}x is group 1 then x", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "${1}x"}},
			path: "a", want: "ax",
		},
		{
			name: "named groups", rules: []rewrite.Rule{{Match: `^(?P<dir>[^/]+)/(?P<file>.*)$`, Replace: "$file/${dir}"}},
			path: "a/b", want: "b/a",
		},
		{
			name:  "repeated name takes the group that matched",
			rules: []rewrite.Rule{{Match: `^(?:a(?P<n>\d)|b(?P<n>\d))$`, Replace: "n$n"}},
			path:  "b7", want: "n7",
		},
		{
			name: "group that took no part is empty", rules: []rewrite.Rule{{Match: `^(x)?(.*)$`, Replace: "[$1]$2"}},
			path: "y", want: "[]y",
		},
		{
			name: "$$ is a dollar sign", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "$$1/$1"}},
			path: "a", want: "$1/a",
		},
		{
			name: "{{ and }} are braces", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "{{client_ip}}/$1"}},
			path: "a", client: "192.0.2.7", want: "{client_ip}/a",
		},
		{
			name: "group text is not read as $ syntax", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "x/$1"}},
			path: "$1${1}$$", want: "x/$1${1}$$",
		},
		{
			name: "group text is not read as a placeholder", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "x/$1"}},
			path: "{client_ip}", client: "192.0.2.7", want: "x/{client_ip}",
		},
		{
			name: "lowercase folds the whole result", rules: []rewrite.Rule{{Match: `^A`, Replace: "B", Lowercase: true}},
			path: "A/CD", want: "b/cd",
		},
		{
			name: "lowercase folds ASCII only", rules: []rewrite.Rule{{Match: `^`, Lowercase: true}},
			path: "ÄRGER/X\xc9", want: "Ärger/x\xc9",
		},
		{
			name: "lowercase folds placeholders", rules: []rewrite.Rule{{Match: `^`, Replace: "{client_ip_hex}/", Lowercase: true}},
			path: "x", client: "192.168.0.1", want: "c0a80001/x",
		},
		{
			name: "result is cleaned", rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: `/a\\b//./c/../$1/`}},
			path: "x", want: "a/b/x",
		},
		{
			name: "dot-dot inside the root is resolved", rules: []rewrite.Rule{{Match: `^up/(.*)$`, Replace: "a/../$1"}},
			path: "up/x", want: "x",
		},
		{
			name: "rules run in order, each on the previous result",
			rules: []rewrite.Rule{
				{Match: `^a/(.*)$`, Replace: "b/$1"},
				{Match: `^b/(.*)$`, Replace: "c/$1"},
			},
			path: "a/x", want: "c/x",
		},
		{
			name: "rules in the other order give another result",
			rules: []rewrite.Rule{
				{Match: `^b/(.*)$`, Replace: "c/$1"},
				{Match: `^a/(.*)$`, Replace: "b/$1"},
			},
			path: "a/x", want: "b/x",
		},
		{
			name: "a rule runs once", rules: []rewrite.Rule{{Match: `^a`, Replace: "aa"}},
			path: "a", want: "aa",
		},
		{
			name:  "a skipped if_exists rule leaves the path to the next rule",
			rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "new/$1", IfExists: true}, {Match: `^x$`, Replace: "y"}},
			path:  "x", want: "y",
		},
		{
			name:  "an if_exists result equal to the path is not checked",
			rules: []rewrite.Rule{{Match: `^(.*)$`, Replace: "$1", IfExists: true}},
			path:  "x", want: "x",
		},
		{
			name:  "a deny rule that does not match lets the request through",
			rules: []rewrite.Rule{{Match: `^secret/`, Deny: true}},
			path:  "public/secret/x", want: "public/secret/x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := mustNew(t, tt.rules)
			req := request(tt.path, tt.client)
			before := *req
			got, err := rw.Rewrite(req, existIn(tt.exists...))
			if err != nil {
				t.Fatalf("Rewrite(%q): %v", tt.path, err)
			}
			if got != tt.want {
				t.Errorf("Rewrite(%q) = %q, want %q", tt.path, got, tt.want)
			}
			if req.Path != before.Path || req.RawPath != before.RawPath {
				t.Errorf("Rewrite modified the request: Path %q, RawPath %q", req.Path, req.RawPath)
			}
		})
	}
}

func TestClientPlaceholders(t *testing.T) {
	rw := mustNew(t, []rewrite.Rule{{Match: `^(.*)$`, Replace: "{client_ip}/{client_ip_hex}/$1"}})
	tests := []struct {
		name, client, want string
	}{
		{"IPv4", "192.168.0.1", "192.168.0.1/C0A80001/f"},
		{"IPv4-mapped IPv6 is unmapped", "::ffff:192.168.0.1", "192.168.0.1/C0A80001/f"},
		{"IPv4 high bytes", "255.10.0.254", "255.10.0.254/FF0A00FE/f"},
		{"IPv6", "2001:db8::1", "2001:db8::1/20010DB8000000000000000000000001/f"},
		{"IPv6 zone is dropped", "fe80::1%eth0", "fe80::1/FE800000000000000000000000000001/f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rw.Rewrite(request("f", tt.client), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("client %s: got %q, want %q", tt.client, got, tt.want)
			}
		})
	}
	t.Run("no client address is an error", func(t *testing.T) {
		if got, err := rw.Rewrite(request("f", ""), nil); err == nil {
			t.Errorf("got %q and no error", got)
		}
	})
}

func TestRewriteDeny(t *testing.T) {
	custom := &gateway.Error{Code: gateway.ErrFileNotFound, Message: "no such file"}
	tests := []struct {
		name     string
		rules    []rewrite.Rule
		path     string
		wantRule int
		want     gateway.Error
	}{
		{
			name: "deny sends access violation by default", rules: exampleRules,
			path: "secret/key", wantRule: 3, want: gateway.Error{Code: 2, Message: "access violation"},
		},
		{
			name: "deny sees the path earlier rules made", rules: exampleRules,
			path: "boot/secret/key", wantRule: 3, want: gateway.Error{Code: 2, Message: "access violation"},
		},
		{
			name:  "deny sends the rule's error",
			rules: []rewrite.Rule{{Match: `\.key$`, Deny: true, Error: custom}},
			path:  "a.key", wantRule: 0, want: *custom,
		},
		{
			name: "deny stops the later rules",
			rules: []rewrite.Rule{
				{Match: `^a`, Deny: true},
				{Match: `^a(.*)$`, Replace: "b$1"},
			},
			path: "ax", wantRule: 0, want: gateway.Error{Code: 2, Message: "access violation"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := mustNew(t, tt.rules)
			got, err := rw.Rewrite(request(tt.path, "192.0.2.7"), nil)
			var de *rewrite.DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("Rewrite(%q) = %q, %v; want a *DeniedError", tt.path, got, err)
			}
			if de.Rule != tt.wantRule {
				t.Errorf("denied by rule %d, want %d (%v)", de.Rule, tt.wantRule, err)
			}
			if e := gateway.ErrorFor(err); *e != tt.want {
				t.Errorf("client is sent %v, want %v", e, tt.want)
			}
		})
	}
}

// TestRewriteEscapes makes rules and paths that try to leave the root:
// every one is refused with ERROR 2, never rewritten to a path outside.
func TestRewriteEscapes(t *testing.T) {
	tests := []struct {
		name  string
		rules []rewrite.Rule
		path  string
	}{
		{"rule climbs above the root", []rewrite.Rule{{Match: `^(.*)$`, Replace: "../$1"}}, "x"},
		{"rule climbs after going down", []rewrite.Rule{{Match: `^(.*)$`, Replace: "a/../../etc/$1"}}, "passwd"},
		{"rule climbs with backslashes", []rewrite.Rule{{Match: `^win/(.*)$`, Replace: `..\..\$1`}}, "win/x"},
		{"client text becomes dot-dot", []rewrite.Rule{{Match: `^dots-(.*)$`, Replace: "$1$1/etc/shadow"}}, "dots-."},
		{"client text becomes dot-dot after other rules", []rewrite.Rule{
			{Match: `^a(.*)$`, Replace: ".$1"},
			{Match: `^(.*)$`, Replace: "$1/x"},
		}, "a."},
		{"empty result", []rewrite.Rule{{Match: `^.*$`, Replace: ""}}, "x"},
		{"result of only slashes and dots", []rewrite.Rule{{Match: `^.*$`, Replace: "/./"}}, "x"},
		{"NUL in the result", []rewrite.Rule{{Match: `^(.*)$`, Replace: "$1\x00.txt"}}, "x"},
		{"escape in an if_exists rule is refused, not skipped", []rewrite.Rule{{Match: `^(.*)$`, Replace: "../$1", IfExists: true}}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := mustNew(t, tt.rules)
			checked := false
			got, err := rw.Rewrite(request(tt.path, "192.0.2.7"), func(string) (bool, error) { checked = true; return true, nil })
			var de *rewrite.DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("Rewrite(%q) = %q, %v; want a *DeniedError", tt.path, got, err)
			}
			if e := gateway.ErrorFor(err); *e != (gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}) {
				t.Errorf("client is sent %v, want ERROR 2 access violation", e)
			}
			if checked {
				t.Error("an escaping path was checked for existence")
			}
		})
	}
}

func TestRewriteExistsError(t *testing.T) {
	rw := mustNew(t, exampleRules)
	boom := errors.New("backend down")
	_, err := rw.Rewrite(request("x", "192.0.2.7"), func(string) (bool, error) { return false, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want an error wrapping %v", err, boom)
	}
}

func TestRewriteNilExistsSkipsIfExists(t *testing.T) {
	rw := mustNew(t, exampleRules)
	got, err := rw.Rewrite(request("x", "192.0.2.7"), nil)
	if err != nil || got != "x" {
		t.Fatalf("got %q, %v; want x", got, err)
	}
}
