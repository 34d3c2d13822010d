package gateway

import (
	"net/netip"
	"time"
)

// An Arrival is a request as it reaches a listening socket, before the
// server spends anything on it: no session slot, socket or goroutine yet.
// It is what [Server.Admit] decides about.
type Arrival struct {
	Client  netip.AddrPort // the client's address and port (its transfer ID)
	Local   netip.AddrPort // the address the request was sent to, and the port
	Write   bool           // a write request (WRQ); else a read request
	RawPath string         // the filename as the client sent it
	Mode    string         // the transfer mode, lower-cased
	At      time.Time      // when the request reached the socket
}

// AdmitAction is what an admission hook does with a request.
type AdmitAction uint8

const (
	// AdmitAccept lets the request on, to the built-in limits and then a
	// session. It is the zero Admission's action.
	AdmitAccept AdmitAction = iota
	// AdmitRefuse answers the request with an ERROR from the listening
	// port (Admission.Error; ERROR 2 "access violation" if nil).
	AdmitRefuse
	// AdmitDrop ignores the request: nothing is sent, it is only counted.
	AdmitDrop
)

// Admission is an admission hook's decision about a request.
type Admission struct {
	Action AdmitAction
	// Error is what a refused request gets. It is sent from the listening
	// port, so its message is cut to the request's length (see
	// [Server.Admit]).
	Error *Error
}

// errPolicy is what a request refused without a chosen error gets.
var errPolicy = &Error{Code: ErrAccessViolation, Message: "access violation"}

// admit runs the server's admission hook, if any, and acts on a refusal or
// a drop: it reports whether the request goes on. A panic of the hook
// refuses the request and is logged.
func (s *Server) admit(c *config, a Arrival, answer func(*Error)) (ok bool) {
	if c.admit == nil {
		return true
	}
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("admission hook panic", "client", a.Client, "panic", v)
			s.state.policyRefusals.Add(1)
			answer(errPolicy)
			ok = false
		}
	}()
	d := c.admit(a)
	switch d.Action {
	case AdmitAccept:
		return true
	case AdmitDrop:
		s.state.policyDrops.Add(1)
		return false
	default:
		e := d.Error
		if e == nil {
			e = errPolicy
		}
		s.state.policyRefusals.Add(1)
		answer(e)
		return false
	}
}
