package rewrite

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/internal/placeholder"
)

// Rule is one rewrite rule; see the package documentation for how the
// rules of a [Rewriter] run.
type Rule struct {
	// Match is the regular expression (Go's RE2 syntax) the path is
	// matched against. It is not anchored: write ^ and $ to match the
	// whole path. It must not be empty (^ matches every path).
	Match string

	// Replace is what the leftmost match of Match is replaced by, with
	// $1, ${name} and $$ as in regexp.Regexp.Expand and the placeholders
	// {client_ip} and {client_ip_hex} ({{ and }} for literal braces).
	// Empty deletes the matched text.
	Replace string

	// Lowercase folds the ASCII letters of the rule's result to lower
	// case.
	Lowercase bool

	// IfExists keeps the rule's result only if the next handler has
	// content at it; otherwise the rule is skipped.
	IfExists bool

	// Deny refuses a request whose path Match matches. A deny rule has no
	// Replace, Lowercase or IfExists.
	Deny bool

	// Error is what a deny rule sends the client; ERROR 2 "access
	// violation" if nil. It is copied by New. Only a deny rule may set it.
	Error *gateway.Error
}

// errAccess is sent for a deny rule without an Error and for a result
// that escapes the root.
var errAccess = gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}

// rule is a compiled Rule.
type rule struct {
	re       *regexp.Regexp
	repl     []piece
	lower    bool
	ifExists bool
	deny     *gateway.Error // non-nil: a deny rule
}

// piece is one part of a compiled Replace.
type piece struct {
	kind   pieceKind
	lit    string // pieceLiteral
	groups []int  // pieceGroup: the groups of that number or name, the first that took part wins
}

type pieceKind uint8

const (
	pieceLiteral pieceKind = iota
	pieceGroup
	pieceClientIP
	pieceClientIPHex
)

// placeholders are the {name}s of Replace.
var placeholders = map[string]pieceKind{
	"client_ip":     pieceClientIP,
	"client_ip_hex": pieceClientIPHex,
}

func isPlaceholder(name string) bool { _, ok := placeholders[name]; return ok }

// New compiles rules into a Rewriter. It reports every rule it refuses,
// each as "rewrite: rule N: problem" with N the rule's index in rules
// (from 0): an empty Match or one that is not a valid regexp, a Replace
// that refers to a group Match does not have or holds an unknown
// placeholder or a stray $ or brace, and a deny rule with Replace,
// Lowercase or IfExists (or an Error on a rule without Deny).
func New(rules []Rule) (*Rewriter, error) {
	rw := &Rewriter{rules: make([]rule, 0, len(rules))}
	var errs []error
	for i, r := range rules {
		c, err := compile(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("rewrite: rule %d: %w", i, err))
			continue
		}
		rw.rules = append(rw.rules, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rw, nil
}

func compile(r Rule) (rule, error) {
	if r.Match == "" {
		return rule{}, errors.New("empty match (^ matches every path)")
	}
	if r.Deny {
		var extra []string
		if r.Replace != "" {
			extra = append(extra, "replace")
		}
		if r.Lowercase {
			extra = append(extra, "lowercase")
		}
		if r.IfExists {
			extra = append(extra, "if_exists")
		}
		if len(extra) > 0 {
			return rule{}, fmt.Errorf("a deny rule only refuses, and cannot have %s", strings.Join(extra, ", "))
		}
	} else if r.Error != nil {
		return rule{}, errors.New("error is set but deny is not")
	}
	re, err := regexp.Compile(r.Match)
	if err != nil {
		return rule{}, fmt.Errorf("match: %w", err)
	}
	if r.Deny {
		e := errAccess
		if r.Error != nil {
			e = *r.Error
		}
		return rule{re: re, deny: &e}, nil
	}
	repl, err := parseReplace(r.Replace, re)
	if err != nil {
		return rule{}, fmt.Errorf("replace %q: %w", r.Replace, err)
	}
	return rule{re: re, repl: repl, lower: r.Lowercase, ifExists: r.IfExists}, nil
}

// parseReplace compiles a Replace text for the regexp re.
func parseReplace(s string, re *regexp.Regexp) ([]piece, error) {
	var (
		pieces []piece
		lit    strings.Builder
	)
	flush := func() {
		if lit.Len() > 0 {
			pieces = append(pieces, piece{kind: pieceLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '$':
			if i+1 < len(s) && s[i+1] == '$' {
				lit.WriteByte('$')
				i += 2
				continue
			}
			name, n, ok := extractRef(s[i+1:])
			if !ok {
				return nil, fmt.Errorf("the $ at byte %d starts no group reference (write $$ for a dollar sign)", i)
			}
			groups, err := resolveGroup(name, re)
			if err != nil {
				return nil, err
			}
			flush()
			pieces = append(pieces, piece{kind: pieceGroup, groups: groups})
			i += 1 + n
		case '{', '}':
			l, name, n, err := placeholder.Scan(s, i, isPlaceholder, "{client_ip}, {client_ip_hex}")
			if err != nil {
				return nil, err
			}
			if l != 0 {
				lit.WriteByte(l)
			} else {
				flush()
				pieces = append(pieces, piece{kind: placeholders[name]})
			}
			i += n
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return pieces, nil
}

// extractRef reads the name of a group reference from s, the text after
// a $, as regexp.Regexp.Expand does: a name in braces, or the longest run
// of letters, digits and underscores. n is the length of the reference
// in s.
func extractRef(s string) (name string, n int, ok bool) {
	brace := len(s) > 0 && s[0] == '{'
	if brace {
		s = s[1:]
	}
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			break
		}
		i += size
	}
	if i == 0 {
		return "", 0, false
	}
	name, n = s[:i], i
	if brace {
		if i >= len(s) || s[i] != '}' {
			return "", 0, false
		}
		n += 2
	}
	return name, n, true
}

// resolveGroup returns the groups of re that the reference name means:
// a number, or every group of that name (Go lets a name repeat; Expand
// takes the first of them that took part in the match).
func resolveGroup(name string, re *regexp.Regexp) ([]int, error) {
	if isDigits(name) {
		if len(name) > 1 && name[0] == '0' {
			return nil, fmt.Errorf("$%s: a group number has no leading zero (Expand reads it as a name)", name)
		}
		num, err := strconv.Atoi(name)
		if err != nil || num > re.NumSubexp() {
			return nil, fmt.Errorf("$%s refers to group %s, and the match has %d", name, name, re.NumSubexp())
		}
		return []int{num}, nil
	}
	var groups []int
	for i, n := range re.SubexpNames() {
		if i > 0 && n == name {
			groups = append(groups, i)
		}
	}
	if len(groups) > 0 {
		return groups, nil
	}
	hint := ""
	if _, ok := placeholders[name]; ok {
		hint = fmt.Sprintf(" (for the placeholder write {%s})", name)
	} else if d := leadingDigits(name); d != "" {
		hint = fmt.Sprintf(" (for group %s followed by %q write ${%s}%s)", d, name[len(d):], d, name[len(d):])
	}
	return nil, fmt.Errorf("$%s names no group of the match%s", name, hint)
}

func isDigits(s string) bool {
	return s != "" && leadingDigits(s) == s
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i]
}
