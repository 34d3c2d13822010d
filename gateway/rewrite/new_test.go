package rewrite_test

import (
	"strings"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
)

// TestNewErrors puts each bad rule after two good ones, so that its
// message must name rule 2.
func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		rule rewrite.Rule
		want string // in the message, after "rewrite: rule 2: "
	}{
		{"empty match", rewrite.Rule{Replace: "x"}, "empty match"},
		{"bad regexp", rewrite.Rule{Match: `(boot`, Replace: "x"}, "match: error parsing regexp: missing closing )"},
		{"unknown placeholder", rewrite.Rule{Match: `^(.*)$`, Replace: "{client_mac}/$1"}, "unknown placeholder {client_mac}"},
		{"empty placeholder", rewrite.Rule{Match: `^`, Replace: "{}"}, "unknown placeholder {}"},
		{"unclosed brace", rewrite.Rule{Match: `^`, Replace: "{client_ip"}, "the { at byte 0 is not closed"},
		{"lone closing brace", rewrite.Rule{Match: `^`, Replace: "a}"}, "the } at byte 1 closes nothing"},
		{"group beyond the count", rewrite.Rule{Match: `^(a)(b)$`, Replace: "$3"}, "$3 refers to group 3, and the match has 2"},
		{"group in braces beyond the count", rewrite.Rule{Match: `^a$`, Replace: "${1}"}, "$1 refers to group 1, and the match has 0"},
		{"group number with a leading zero", rewrite.Rule{Match: `^(a)$`, Replace: "$01"}, "$01: a group number has no leading zero"},
		{"number followed by letters", rewrite.Rule{Match: `^(.*)$`, Replace: "$1x"}, `$1x names no group of the match (for group 1 followed by "x" write ${1}x)`},
		{"unknown group name", rewrite.Rule{Match: `^(?P<file>.*)$`, Replace: "$name"}, "$name names no group of the match"},
		{"placeholder written as a group", rewrite.Rule{Match: `^`, Replace: "${client_ip}/"}, "(for the placeholder write {client_ip})"},
		{"dollar at the end", rewrite.Rule{Match: `^`, Replace: "a$"}, "the $ at byte 1 starts no group reference (write $$ for a dollar sign)"},
		{"dollar before a slash", rewrite.Rule{Match: `^`, Replace: "$/"}, "the $ at byte 0 starts no group reference"},
		{"unclosed group brace", rewrite.Rule{Match: `^(a)`, Replace: "${1"}, "the $ at byte 0 starts no group reference"},
		{"deny with replace", rewrite.Rule{Match: `^`, Deny: true, Replace: "x"}, "a deny rule only refuses, and cannot have replace"},
		{"deny with lowercase and if_exists", rewrite.Rule{Match: `^`, Deny: true, Lowercase: true, IfExists: true}, "cannot have lowercase, if_exists"},
		{"error without deny", rewrite.Rule{Match: `^`, Error: &gateway.Error{Code: 1, Message: "x"}}, "error is set but deny is not"},
	}
	good := []rewrite.Rule{{Match: `^boot/(.*)$`, Replace: "$1"}, {Match: `^x`, Deny: true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := append(append([]rewrite.Rule(nil), good...), tt.rule)
			rw, err := rewrite.New(rules)
			if err == nil {
				t.Fatalf("New accepted %+v", tt.rule)
			}
			if rw != nil {
				t.Error("New returned a Rewriter with its error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "rewrite: rule 2: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want \"rewrite: rule 2: ...%s...\"", msg, tt.want)
			}
		})
	}
}

func TestNewReportsEveryBadRule(t *testing.T) {
	_, err := rewrite.New([]rewrite.Rule{
		{Match: `(`},
		{Match: `^ok$`, Replace: "fine"},
		{Match: `^`, Replace: "{client_mac}"},
	})
	if err == nil {
		t.Fatal("New accepted two bad rules")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "rewrite: rule 0: ") || !strings.HasPrefix(lines[1], "rewrite: rule 2: ") {
		t.Errorf("error %q, want one line for rule 0 and one for rule 2", err)
	}
}

func TestNewAccepts(t *testing.T) {
	for _, r := range []rewrite.Rule{
		{Match: `^boot/`},
		{Match: `^(.*)$`, Replace: "$0 ${1} $$ {{ }} {client_ip} {client_ip_hex}"},
		{Match: `^(?P<a>x)|(?P<a>y)$`, Replace: "$a"},
		{Match: `^(?P<d_1>x)$`, Replace: "${d_1}"},
		{Match: `^secret/`, Deny: true, Error: &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}},
		{Match: `^`, Lowercase: true, IfExists: true},
	} {
		if _, err := rewrite.New([]rewrite.Rule{r}); err != nil {
			t.Errorf("New(%+v): %v", r, err)
		}
	}
	if _, err := rewrite.New(nil); err != nil {
		t.Errorf("New(nil): %v", err)
	}
}

// TestNewCopiesError: changing a rule's Error after New does not change
// what a deny sends.
func TestNewCopiesError(t *testing.T) {
	e := &gateway.Error{Code: gateway.ErrFileNotFound, Message: "file not found"}
	rw := mustNew(t, []rewrite.Rule{{Match: `^`, Deny: true, Error: e}})
	e.Message = "changed"
	_, err := rw.Rewrite(request("x", ""), nil)
	if got := gateway.ErrorFor(err); got.Message != "file not found" {
		t.Errorf("deny sends %v, want the error as it was at New", got)
	}
}
