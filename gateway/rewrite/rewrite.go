package rewrite

import (
	"context"
	"errors"
	"fmt"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/internal/placeholder"
)

// Rewriter is a compiled list of rules, made by [New]. It is immutable and
// safe for concurrent use.
type Rewriter struct {
	rules []rule
}

// DeniedError is the error of a refused request: a deny rule matched its
// path, or a rule's result escaped the root or was empty. Its Unwrap
// gives Err, the error the client is sent (see [gateway.ErrorFor]).
type DeniedError struct {
	// Rule is the index of the refusing rule in the rules given to New.
	Rule int
	// Path is the path the deny rule matched, or the result that was
	// refused (not cleaned) when it escaped or was empty.
	Path string
	// Err is what the client is sent: the deny rule's Error, or ERROR 2
	// "access violation".
	Err *gateway.Error

	escaped bool // Path is a rule's result that escapes or is empty
}

func (e *DeniedError) Error() string {
	if e.escaped {
		return fmt.Sprintf("rewrite: rule %d made %q, which escapes the root or is empty", e.Rule, e.Path)
	}
	return fmt.Sprintf("rewrite: rule %d denies %q", e.Rule, e.Path)
}

// Unwrap returns Err.
func (e *DeniedError) Unwrap() error { return e.Err }

// Rewrite returns the path the rules make of req.Path, for a client at
// req.RemoteAddr, without serving anything: for tests and for checking a
// configuration. req.Path should be what the server makes of a name
// (see [gateway.CleanPath]). Rewrite does not modify req. exists answers for the IfExists
// rules whether content exists at a path (an error ends the rewrite with
// it); with a nil exists no content exists, and every IfExists rule is
// skipped.
//
// A refused request returns a [*DeniedError]. Otherwise the error is one
// of exists, or the complaint of a rule with a client placeholder about
// a request without a valid RemoteAddr.
func (rw *Rewriter) Rewrite(req *gateway.Request, exists func(path string) (bool, error)) (string, error) {
	st := state{req: req, exists: exists}
	p, err := rw.run(&st)
	if err != nil {
		return "", err
	}
	return p, nil
}

// Middleware returns the rewriter as a [gateway.Middleware]: the handler
// it makes of next rewrites each request's Path in place and then calls
// next with that request, as the package documentation describes. With no
// rules it returns next itself.
func (rw *Rewriter) Middleware() gateway.Middleware {
	return func(next gateway.Handler) gateway.Handler {
		if len(rw.rules) == 0 {
			return next
		}
		return &handler{rw: rw, next: next}
	}
}

type handler struct {
	rw   *Rewriter
	next gateway.Handler
}

func (h *handler) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	st := state{ctx: ctx, req: req, next: h.next}
	defer st.release() // a check's content not handed over, even on a panic
	p, err := h.rw.run(&st)
	req.Path = p
	if err != nil {
		return nil, err
	}
	if st.held != nil && st.heldPath == p {
		c := st.held
		st.held = nil
		return c, nil
	}
	return h.next.ServeTFTP(ctx, req)
}

// state is one request's way through the rules.
type state struct {
	ctx context.Context
	req *gateway.Request

	// Existence for IfExists: next (the middleware) or exists (Rewrite).
	next   gateway.Handler
	exists func(string) (bool, error)

	// held is content a check opened, at heldPath, the current path.
	held     gateway.Content
	heldPath string
}

// release closes the content a check opened, if it is still held.
func (st *state) release() {
	if st.held != nil {
		_ = st.held.Close() // opened only to look: nothing read, nothing lost
		st.held, st.heldPath = nil, ""
	}
}

// run applies the rules to st.req.Path. It returns the final path, or the
// path reached before a refusal or an error, and that error.
func (rw *Rewriter) run(st *state) (string, error) {
	path := st.req.Path
	for i := range rw.rules {
		r := &rw.rules[i]
		if r.deny != nil {
			if r.re.MatchString(path) {
				st.release()
				return path, &DeniedError{Rule: i, Path: path, Err: r.deny}
			}
			continue
		}
		m := r.re.FindStringSubmatchIndex(path)
		if m == nil {
			continue
		}
		res, err := expand(r, path, m, st.req)
		if err != nil {
			st.release()
			return path, fmt.Errorf("rewrite: rule %d: %w", i, err)
		}
		if !isClean(res) {
			p, err := gateway.CleanPath(res)
			if err != nil {
				st.release()
				return path, &DeniedError{Rule: i, Path: res, Err: &errAccess, escaped: true}
			}
			res = p
		}
		if res == path {
			continue
		}
		var opened gateway.Content
		if r.ifExists {
			c, ok, err := st.check(i, res)
			if err != nil {
				st.release()
				return path, err
			}
			if !ok {
				continue
			}
			opened = c
		}
		path = res
		st.release() // held at the previous path
		if opened != nil {
			st.held, st.heldPath = opened, path
		}
	}
	return path, nil
}

// check tells whether content exists at path, the result of rule i, and
// returns the content if it opened it.
func (st *state) check(i int, path string) (gateway.Content, bool, error) {
	if st.next == nil {
		if st.exists == nil {
			return nil, false, nil
		}
		ok, err := st.exists(path)
		if err != nil {
			return nil, false, fmt.Errorf("rewrite: rule %d: checking %q: %w", i, path, err)
		}
		return nil, ok, nil
	}
	probe := *st.req
	probe.Path = path
	if sh, ok := st.next.(gateway.StatHandler); ok {
		if _, _, err := sh.StatContent(st.ctx, &probe); err == nil {
			return nil, true, nil
		}
	}
	c, err := st.next.ServeTFTP(st.ctx, &probe)
	switch {
	case err != nil && gateway.ErrorFor(err).Code == gateway.ErrFileNotFound:
		if c != nil {
			_ = c.Close()
		}
		return nil, false, nil
	case err != nil:
		if c != nil {
			_ = c.Close()
		}
		return nil, false, fmt.Errorf("rewrite: rule %d: checking %q: %w", i, path, err)
	case c == nil:
		return nil, false, fmt.Errorf("rewrite: rule %d: checking %q: %w", i, path, errNoContent)
	}
	return c, true, nil
}

var (
	errNoContent = errors.New("the handler returned no content and no error")
	errNoAddr    = errors.New("the request has no valid client address for a placeholder")
)

// expand returns path with the match m of rule r replaced by the
// expansion of its Replace, lower-cased if the rule says so.
func expand(r *rule, path string, m []int, req *gateway.Request) (string, error) {
	var buf [256]byte // on the stack for most paths
	b := append(buf[:0], path[:m[0]]...)
	for i := range r.repl {
		p := &r.repl[i]
		switch p.kind {
		case pieceLiteral:
			b = append(b, p.lit...)
		case pieceGroup:
			for _, g := range p.groups {
				if m[2*g] >= 0 {
					b = append(b, path[m[2*g]:m[2*g+1]]...)
					break
				}
			}
		case pieceClientIP, pieceClientIPHex:
			a := req.RemoteAddr.Addr()
			if !a.IsValid() {
				return "", errNoAddr
			}
			if p.kind == pieceClientIP {
				b = placeholder.AppendClientIP(b, a)
			} else {
				b = placeholder.AppendClientIPHex(b, a)
			}
		}
	}
	b = append(b, path[m[1]:]...)
	if r.lower {
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
	}
	if string(b) == path {
		return path, nil
	}
	return string(b), nil
}

// isClean reports whether gateway.CleanPath would return s unchanged:
// then it need not be called (it allocates).
func isClean(s string) bool {
	if s == "" || s[0] == '/' {
		return false
	}
	if c := s[len(s)-1]; c < 0x20 || c == 0x7f || c == 0xff {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			if s[i] == 0 || s[i] == '\\' {
				return false
			}
			continue
		}
		switch s[start:i] {
		case "", ".", "..":
			return false
		}
		start = i + 1
	}
	return true
}
