package gateway

import (
	"sync"
	"time"
)

// workers runs sessions on goroutines that outlive them. A session then
// starts on a stack that earlier sessions have grown already: a new
// goroutine's stack is copied several times on its way to the handler,
// which a profile of small requests (PXELINUX's config search, mostly
// missing files) showed as about a sixth of the server's time. A worker
// waits workerIdle for its next session, then exits; all exit once the
// server closes.
type workers struct {
	work     chan func() // unbuffered: a send succeeds only to a waiting worker
	quit     chan struct{}
	quitOnce sync.Once
}

// workerIdle is how long a worker waits for a session before it exits.
const workerIdle = 2 * time.Second

func newWorkers() *workers {
	return &workers{work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on a waiting worker, or on a new one.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil // not kept alive while waiting
		if t == nil {
			t = time.NewTimer(workerIdle)
		} else {
			t.Reset(workerIdle)
		}
		select {
		case f = <-w.work:
		case <-t.C:
			return
		case <-w.quit:
			t.Stop()
			return
		}
	}
}

// stop makes the waiting workers exit, and the busy ones once their
// session ends.
func (w *workers) stop() { w.quitOnce.Do(func() { close(w.quit) }) }
