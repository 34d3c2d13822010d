package main

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what runLoad measured: every job's result, in no
// particular order, the run's wall time and the process's CPU time.
type loadResult[R any] struct {
	results         []R
	elapsed         time.Duration
	userCPU, sysCPU time.Duration
}

// runLoad runs jobs 0, 1, ... (cfg.n of them, or until -d stops new ones;
// jobs started keep ctx, so that they finish, bounded by their own
// timeouts and retries), cfg.concurrency at a time. newWorker makes each
// worker's job function (with its own state, such as a hash); a job
// returns its result and whether it got the expected answer, which cnt
// counts (and -progress shows).
func runLoad[R any](ctx context.Context, cfg *config, cnt *counters, stderr io.Writer, newWorker func() func(i int) (R, bool)) loadResult[R] {
	stopStarting := ctx
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		stopStarting, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	var (
		next    atomic.Int64 // jobs started
		wg      sync.WaitGroup
		perWork = make([][]R, cfg.concurrency)
	)
	user0, sys0 := cpuTime()
	start := time.Now()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.progress {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			showProgress(stderr, cnt, start, progressDone)
		}()
	}
	for w := range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job := newWorker()
			for stopStarting.Err() == nil {
				i := next.Add(1) - 1
				if cfg.n > 0 && i >= int64(cfg.n) {
					return
				}
				r, ok := job(int(i))
				if ok {
					cnt.ok.Add(1)
				} else {
					cnt.failed.Add(1)
				}
				perWork[w] = append(perWork[w], r)
			}
		}()
	}
	wg.Wait()
	res := loadResult[R]{elapsed: time.Since(start)}
	close(progressDone)
	progressWG.Wait()
	user1, sys1 := cpuTime()
	res.userCPU, res.sysCPU = user1-user0, sys1-sys0
	for _, rs := range perWork {
		res.results = append(res.results, rs...)
	}
	return res
}
