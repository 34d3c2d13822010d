package gateway

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWorkersReuseAndStop: sessions run one after another reuse one
// worker; concurrent ones get a worker each; after stop every worker
// exits, idle or busy.
func TestWorkersReuseAndStop(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorkers()
	for range 50 {
		done := make(chan struct{})
		w.run(func() { close(done) })
		<-done
		time.Sleep(time.Millisecond) // the worker is back waiting
	}
	if n := runtime.NumGoroutine() - base; n > 2 {
		t.Errorf("%d goroutines for sequential sessions, want 1", n)
	}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 10 {
		wg.Add(1)
		w.run(func() { wg.Done(); <-release })
	}
	wg.Wait() // all ten run at once
	w.stop()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n > 0 {
		t.Errorf("%d workers left after stop", n)
	}
	w.stop() // twice: no panic
}
