package remote

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// watcher logs the states that an operator must see once, not once per
// session: a backend refusing the gateway's TLS certificate or token, or no
// backend answering at all. It logs when a state begins and when it ends.
type watcher struct {
	log    *slog.Logger
	target string

	mu    sync.Mutex
	state map[string]string // key -> reason of the current bad state
}

// bad records that key is in a bad state for reason, logging it at level
// if the state is new or its reason changed.
func (w *watcher) bad(key string, level slog.Level, msg, reason string) {
	w.mu.Lock()
	prev, ok := w.state[key]
	w.state[key] = reason
	w.mu.Unlock()
	if ok && (prev == reason || key == keyReach) {
		return // the reason of "no backend" varies with the address tried
	}
	args := []any{"target", w.target}
	if b := strings.TrimPrefix(key, keyPrefix(key)); b != "" {
		args = append(args, "backend", b)
	}
	w.log.Log(context.Background(), level, msg, append(args, "reason", reason)...)
}

// any reports whether a state whose key starts with one of prefixes is
// bad.
func (w *watcher) any(prefixes ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.state {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
	}
	return false
}

// good records that key is fine again, logging it if it was not.
func (w *watcher) good(key, msg string) {
	w.mu.Lock()
	_, ok := w.state[key]
	delete(w.state, key)
	w.mu.Unlock()
	if ok {
		args := []any{"target", w.target}
		if b := strings.TrimPrefix(key, keyPrefix(key)); b != "" {
			args = append(args, "backend", b)
		}
		w.log.Info(msg, args...)
	}
}

func keyPrefix(key string) string {
	if i := strings.IndexByte(key, ' '); i >= 0 {
		return key[:i+1]
	}
	return ""
}

// Keys of the watcher's states; the TLS key is followed by the address.
const (
	keyAuth    = "auth "
	keyReach   = "reach "
	keyService = "service "
	keyTLS     = "tls "
)

// watchCreds wraps TLS transport credentials to report handshake failures
// and a backend refusing the gateway's client certificate. With TLS 1.3 the
// server checks the client certificate after the client's handshake has
// completed, so the refusal arrives as an alert on the first read.
type watchCreds struct {
	credentials.TransportCredentials
	w *watcher
}

func (c *watchCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	addr := raw.RemoteAddr().String()
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		if ctx.Err() == nil {
			c.w.bad(keyTLS+addr, slog.LevelError, "backend TLS handshake failed; this gateway cannot use the backend", tlsReason(err))
		}
		return nil, nil, err
	}
	return &watchConn{Conn: conn, w: c.w, key: keyTLS + addr}, info, nil
}

func (c *watchCreds) Clone() credentials.TransportCredentials {
	return &watchCreds{TransportCredentials: c.TransportCredentials.Clone(), w: c.w}
}

// watchConn reports the outcome of the first read of a TLS connection: the
// backend's HTTP/2 settings, or its TLS alert refusing the gateway.
//
// The alert can also show as a failed write: the backend closes right after
// sending it, so the client preface that grpc writes may meet a reset, and
// grpc may close the connection before its reader has seen the alert. A write
// that fails before the first read therefore reads what the backend sent,
// which is already in the kernel's buffer (TCP delivers the alert before the
// reset), so that the operator learns the reason rather than "broken pipe".
type watchConn struct {
	net.Conn
	w    *watcher
	key  string
	once sync.Once
}

// alertWait bounds the read that looks for an alert after a failed write.
const alertWait = 200 * time.Millisecond

func (c *watchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.once.Do(func() { c.report(n, err) })
	return n, err
}

func (c *watchConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.once.Do(func() {
			// The connection is lost either way; what is read here is
			// only looked at, never handed to grpc.
			_ = c.Conn.SetReadDeadline(time.Now().Add(alertWait))
			var b [64]byte
			rn, rerr := c.Conn.Read(b[:])
			c.report(rn, rerr)
		})
	}
	return n, err
}

func (c *watchConn) report(n int, err error) {
	var op *net.OpError
	switch {
	case n > 0:
		c.w.good(c.key, "backend TLS connection accepted")
	case errors.As(err, &op) && op.Op == "remote error":
		c.w.bad(c.key, slog.LevelError, "backend refused this gateway's TLS client certificate", op.Error())
	}
}

func tlsReason(err error) string {
	s := err.Error()
	// grpc-go prefixes the handshake error with nothing useful to operators.
	return strings.TrimPrefix(s, "transport: authentication handshake failed: ")
}
