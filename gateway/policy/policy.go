// Package policy decides about TFTP requests by the client's network, as
// an admission hook ([gateway.Server.Admit]): which networks are served,
// refused with an ERROR or dropped without a word, and per network the
// options refused, the blksize and windowsize granted and the session and
// request-rate limits. It runs before the server spends anything on a
// request (a session slot, a socket, a goroutine).
//
// A Policy is immutable; to change one while serving (a configuration
// reload), build a new one and swap it in, for instance through an
// atomic.Pointer read by the hook.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/tftpgw/tftpgw/gateway"
)

// Access is what a rule decides about the requests of its clients.
type Access uint8

const (
	// Unset leaves the decision to a later rule (a rule that only sets
	// limits or options).
	Unset Access = iota
	// Allow serves the requests.
	Allow
	// Refuse answers them with the rule's Error (ERROR 2 "access
	// violation" if nil), from the listening port.
	Refuse
	// Drop ignores them: nothing is sent; they are counted in
	// ServerStats.PolicyDrops.
	Drop
)

// String returns "unset", "allow", "refuse" or "drop".
func (a Access) String() string {
	switch a {
	case Allow:
		return "allow"
	case Refuse:
		return "refuse"
	case Drop:
		return "drop"
	}
	return "unset"
}

// A Rule applies to the requests of the clients in its networks.
//
// For each thing a rule can set (Access, and each of the limits and
// options) the first rule in order that matches the client and sets it
// decides it; a rule that matches but leaves a thing unset (zero) leaves
// it to the rules after it, then to the Policy's defaults. So a rule
// that only lowers MaxBlockSize for 10.9.0.0/16 takes effect even after a
// rule that allows 10.0.0.0/8, and a final rule for 0.0.0.0/0 and ::/0
// that refuses makes the policy "deny unless allowed".
type Rule struct {
	// Clients are the networks the rule applies to. An IPv4 client
	// sending through an IPv4-mapped IPv6 socket matches IPv4 networks.
	Clients []netip.Prefix

	// Access is the rule's decision about access; Unset for none.
	Access Access
	// Error is what a Refuse rule answers; ERROR 2 "access violation"
	// if nil.
	Error *gateway.Error

	// RefuseOptions are options never granted to these clients, on top
	// of the defaults' ("blksize", "timeout", "tsize", "windowsize").
	RefuseOptions []string
	// MaxBlockSize and MaxWindowSize replace the defaults' caps on the
	// blksize and windowsize options.
	MaxBlockSize  int
	MaxWindowSize int
	// MaxSessionsPerClient and ClientRequestRate replace the defaults'
	// per-client limits (per client IP address); negative: no limit.
	MaxSessionsPerClient int
	ClientRequestRate    float64

	// Uploads decides about these clients' write requests (WRQ), on top of
	// Access (which applies to every request): Allow lets them on to the
	// server's write handler (its allowed paths decide next), Refuse
	// answers them with ERROR 2 "uploads not allowed", Drop ignores them.
	// The first matching rule that sets it decides; Allow if none does.
	Uploads Access
}

// errUploads is what a write request from a network whose uploads are
// refused gets.
var errUploads = &gateway.Error{Code: gateway.ErrAccessViolation, Message: "uploads not allowed"}

// Policy is a compiled list of rules with defaults.
type Policy struct {
	rules    []Rule
	defaults gateway.Limits

	// decisions memoises the Admission of each set of matching rules (a
	// bit per rule, for the first 64), so that an accepted request costs
	// no allocation once its set has been seen.
	decisions      sync.Map // uint64 -> gateway.Admission
	writeDecisions sync.Map // the same, for write requests
	base           gateway.Admission
}

// New checks the rules and returns their Policy. defaults are the limits
// and options of a request no rule sets them for (a zero field: the
// server's); rules are tried in order. Errors name the rule by index.
func New(defaults gateway.Limits, rules []Rule) (*Policy, error) {
	var errs []error
	if err := defaults.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("defaults: %w", err))
	}
	for i, r := range rules {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p := &Policy{rules: make([]Rule, len(rules)), defaults: defaults}
	for i, r := range rules {
		r.Clients = append([]netip.Prefix(nil), r.Clients...)
		for j, c := range r.Clients {
			r.Clients[j] = c.Masked()
		}
		r.RefuseOptions = append([]string(nil), r.RefuseOptions...)
		p.rules[i] = r
	}
	d := defaults
	d.RefuseOptions = append([]string(nil), defaults.RefuseOptions...)
	p.base = gateway.Admission{Limits: &d}
	return p, nil
}

func (r *Rule) check() error {
	var errs []error
	if len(r.Clients) == 0 {
		errs = append(errs, errors.New("no clients: give the networks it applies to (0.0.0.0/0 and ::/0 for all)"))
	}
	for _, c := range r.Clients {
		if !c.IsValid() {
			errs = append(errs, fmt.Errorf("client network %v is not valid", c))
		}
	}
	if r.Access > Drop {
		errs = append(errs, fmt.Errorf("access %d: want Unset, Allow, Refuse or Drop", r.Access))
	}
	if r.Uploads > Drop {
		errs = append(errs, fmt.Errorf("uploads %d: want Unset, Allow, Refuse or Drop", r.Uploads))
	}
	if r.Error != nil && r.Access != Refuse {
		errs = append(errs, errors.New("an error is only sent by a rule that refuses"))
	}
	if e := r.Error; e != nil && (e.Code > gateway.ErrOptionNegotiation || strings.ContainsRune(e.Message, 0)) {
		errs = append(errs, fmt.Errorf("error %d %q: want a code 0 to 8 and a message without NUL", e.Code, e.Message))
	}
	l := gateway.Limits{
		RefuseOptions: r.RefuseOptions, MaxBlockSize: r.MaxBlockSize, MaxWindowSize: r.MaxWindowSize,
		MaxSessionsPerClient: r.MaxSessionsPerClient, ClientRequestRate: r.ClientRequestRate,
	}
	if err := l.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Admit is the Policy as a [gateway.Server.Admit] hook.
func (p *Policy) Admit(a gateway.Arrival) gateway.Admission {
	if a.Write {
		return p.DecideWrite(a.Client.Addr())
	}
	return p.Decide(a.Client.Addr())
}

// Decide returns the decision about a read request from addr: the first
// rule setting Access decides it (Allow if none does), and the Limits are
// the defaults with what the matching rules set. It does not allocate
// once a set of matching rules has been seen.
func (p *Policy) Decide(addr netip.Addr) gateway.Admission {
	return p.decideFor(addr, false)
}

// DecideWrite returns the decision about a write request (an upload) from
// addr: as Decide's, then refused or dropped if the first rule setting
// Uploads says so.
func (p *Policy) DecideWrite(addr netip.Addr) gateway.Admission {
	return p.decideFor(addr, true)
}

func (p *Policy) decideFor(addr netip.Addr, write bool) gateway.Admission {
	if len(p.rules) == 0 {
		return p.base
	}
	addr = addr.Unmap().WithZone("")
	var set uint64
	memo := len(p.rules) <= 64
	var matched []int // beyond 64 rules only
	for i := range p.rules {
		if !p.rules[i].matches(addr) {
			continue
		}
		if memo {
			set |= 1 << i
		} else {
			matched = append(matched, i)
		}
	}
	if !memo {
		return p.decide(matched, write)
	}
	memos := &p.decisions
	if write {
		memos = &p.writeDecisions
	}
	if d, ok := memos.Load(set); ok {
		return d.(gateway.Admission)
	}
	matched = make([]int, 0, 8)
	for i := range p.rules {
		if set&(1<<i) != 0 {
			matched = append(matched, i)
		}
	}
	d := p.decide(matched, write)
	memos.Store(set, d)
	return d
}

func (r *Rule) matches(addr netip.Addr) bool {
	for _, c := range r.Clients {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}

// decide makes the Admission of a request (a write request if write)
// that the rules of the indexes matched, in order.
func (p *Policy) decide(matched []int, write bool) gateway.Admission {
	l := p.defaults
	l.RefuseOptions = append([]string(nil), p.defaults.RefuseOptions...)
	var access, uploads Access
	var errSent *gateway.Error
	var blk, win, perClient, rate bool
	for _, i := range matched {
		r := &p.rules[i]
		if access == Unset && r.Access != Unset {
			access, errSent = r.Access, r.Error
		}
		if uploads == Unset {
			uploads = r.Uploads
		}
		l.RefuseOptions = append(l.RefuseOptions, r.RefuseOptions...)
		if !blk && r.MaxBlockSize != 0 {
			l.MaxBlockSize, blk = r.MaxBlockSize, true
		}
		if !win && r.MaxWindowSize != 0 {
			l.MaxWindowSize, win = r.MaxWindowSize, true
		}
		if !perClient && r.MaxSessionsPerClient != 0 {
			l.MaxSessionsPerClient, perClient = r.MaxSessionsPerClient, true
		}
		if !rate && r.ClientRequestRate != 0 {
			l.ClientRequestRate, rate = r.ClientRequestRate, true
		}
	}
	switch access {
	case Refuse:
		return gateway.Admission{Action: gateway.AdmitRefuse, Error: errSent}
	case Drop:
		return gateway.Admission{Action: gateway.AdmitDrop}
	}
	if write {
		switch uploads {
		case Refuse:
			return gateway.Admission{Action: gateway.AdmitRefuse, Error: errUploads}
		case Drop:
			return gateway.Admission{Action: gateway.AdmitDrop}
		}
	}
	return gateway.Admission{Limits: &l}
}
