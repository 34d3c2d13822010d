// The content-read watchdog: one block's read may take as long as the
// session waits for a silent client.

package session

import (
	"context"
	"errors"
	"math"
	"time"
)

// stalled reports whether the read watchdog ended the session.
func (s *Session) stalled() bool { return errors.Is(context.Cause(s.Ctx), errStalled) }

// beginRead marks the start of a fill for the watchdog, which cancels the
// session's context (so that a content honouring it returns) when one
// block takes longer to read than the session would wait for a silent
// client: the same rule whatever the window size. The fill marks each
// further block (markRead) and clears the mark when it returns. It
// returns the time of the mark, as markRead does.
func (s *Session) beginRead() time.Duration {
	if s.watchdog == nil {
		s.wdBase = time.Now()
		s.readStart.Store(1)
		// Armed only once s.watchdog is set, which checkStall uses.
		s.watchdog = time.AfterFunc(time.Duration(math.MaxInt64), s.checkStall)
		s.watchdog.Reset(s.readLimit())
		return 0
	}
	return s.markRead()
}

// markRead marks the start of a block's read for the watchdog and returns
// the time since wdBase.
func (s *Session) markRead() time.Duration {
	t := time.Since(s.wdBase)
	s.readStart.Store(int64(t) + 1)
	return t
}

// checkStall runs when the watchdog's timer fires, on the timer's
// goroutine: it cancels the session when the fill in progress has taken
// readLimit, and otherwise rearms for when it would have. It touches only
// atomics and fields set before the timer was armed.
func (s *Session) checkStall() {
	if s.wdStopped.Load() {
		return
	}
	limit := s.readLimit()
	if start := s.readStart.Load(); start != 0 {
		elapsed := time.Duration(int64(time.Since(s.wdBase)) + 1 - start)
		if elapsed >= limit {
			s.Cancel(errStalled)
			return
		}
		limit -= elapsed
	}
	s.watchdog.Reset(limit)
}

// stopWatchdog ends the watchdog for good (the session is over).
func (s *Session) stopWatchdog() {
	if s.watchdog != nil {
		s.wdStopped.Store(true)
		s.watchdog.Stop()
	}
}

// readLimit is how long reading one block may take: as long as the
// session would wait for a silent client.
func (s *Session) readLimit() time.Duration {
	return time.Duration(s.Config.Retries+1) * s.p.timeout
}
