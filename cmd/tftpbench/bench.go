package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// record is the outcome of one transfer.
type record struct {
	file     string
	duration time.Duration
	ttfb     time.Duration
	ttfbWire time.Duration // 0: no kernel timestamp
	bytes    int64
	packets  int64
	dups     int64
	err      error
	mismatch bool // transfer succeeded but the content did not verify
}

// counters are updated by the workers and read by the progress line.
type counters struct {
	ok, failed, bytes atomic.Int64
}

// run executes the load test described by cfg, prints the summary (text on
// stdout, or JSON with cfg.json) and returns errFailed if any transfer
// failed or did not verify.
func run(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	if cfg.steps != nil {
		return runBoot(ctx, cfg, stdout, stderr)
	}
	want := cfg.sha256
	var wantSize int64 = -1
	if cfg.verifyFile != "" {
		f, err := os.Open(cfg.verifyFile)
		if err != nil {
			return fmt.Errorf("verify file: %w", err)
		}
		h := sha256.New()
		wantSize, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("verify file: %w", err)
		}
		want = h.Sum(nil)
	}

	var cnt counters
	res := runLoad(ctx, cfg, &cnt, stderr, func() func(int) (record, bool) {
		var h hash.Hash
		if want != nil {
			h = sha256.New()
		}
		return func(i int) (record, bool) {
			r := transfer(ctx, cfg, i, cfg.files[i%len(cfg.files)], h, want, wantSize, &cnt.bytes)
			return r, r.err == nil && !r.mismatch
		}
	})
	s := summarize(cfg, res.results, res.elapsed, res.userCPU, res.sysCPU)
	if cfg.json {
		if err := writeJSON(stdout, s); err != nil {
			return err
		}
	} else {
		writeText(stdout, s)
	}
	if s.Failed > 0 || s.Transfers == 0 {
		return errFailed
	}
	return nil
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReader counts what passes through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// transfer performs the i-th download and verifies it when want is set,
// or with -put one upload, or with -probe a size probe; the bytes are
// counted into received (or sent) as they go, for the progress line. With
// -expect-error, only that ERROR from the server counts as success.
func transfer(ctx context.Context, cfg *config, i int, file string, h hash.Hash, want []byte, wantSize int64, received *atomic.Int64) record {
	opts := cfg.opts
	opts.LocalAddr = cfg.srcAddr(i)
	if cfg.probe {
		start := time.Now()
		_, err := tftpclient.Probe(ctx, cfg.server, file, opts)
		d := time.Since(start)
		return record{file: file, duration: d, ttfb: d, err: expectError(cfg, err, 0)}
	}
	if cfg.put {
		src := countingReader{bytes.NewReader(cfg.content), received}
		res, err := tftpclient.Put(ctx, cfg.server, file, src, int64(len(cfg.content)), opts)
		return record{
			file: file, duration: res.Duration, ttfb: res.TimeToFirst,
			bytes: res.Size, packets: res.Packets, dups: res.Retransmits, err: err,
		}
	}
	var w io.Writer = io.Discard
	if h != nil {
		h.Reset()
		w = h
	}
	res, err := tftpclient.Get(ctx, cfg.server, file, countingWriter{w, received}, opts)
	r := record{
		file: file, duration: res.Duration, ttfb: res.TimeToFirst, ttfbWire: res.TimeToFirstWire,
		bytes: res.Size, packets: res.Packets, dups: res.Duplicates, err: err,
	}
	if cfg.wantError {
		r.err = expectError(cfg, err, res.Size)
		r.ttfb = res.Duration // the time to the ERROR, the only answer
		return r
	}
	if err == nil && h != nil {
		r.mismatch = !bytes.Equal(h.Sum(nil), want) || (wantSize >= 0 && res.Size != wantSize)
	}
	return r
}

// expectError is wantError with -expect-error's code; without
// -expect-error it returns err.
func expectError(cfg *config, err error, size int64) error {
	if !cfg.wantError {
		return err
	}
	return wantError(cfg.errorCode, err, size)
}

// wantError turns the outcome of a request that should have been answered
// with ERROR code into nil when it was, and into an error saying what came
// instead when it was not (size: the bytes received, if the file came).
func wantError(code int, err error, size int64) error {
	var te *tftpclient.Error
	switch {
	case errors.As(err, &te) && int(te.Code) == code:
		return nil
	case err == nil:
		return fmt.Errorf("expected ERROR %d, got the file (%d bytes)", code, size)
	default:
		return err
	}
}

// errMessage is the key under which a failure is counted.
func errMessage(r record) string {
	if r.mismatch {
		return "verification failed: content differs"
	}
	var te *tftpclient.Error
	if errors.As(r.err, &te) {
		return fmt.Sprintf("server error %d: %s", te.Code, te.Message)
	}
	return r.err.Error()
}

// showProgress rewrites one status line on w twice a second until done is
// closed.
func showProgress(w io.Writer, c *counters, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	line := func() {
		el := time.Since(start)
		b := c.bytes.Load()
		fmt.Fprintf(w, "\r%8.1fs  ok %d  failed %d  %s  %.2f MB/s\x1b[K",
			el.Seconds(), c.ok.Load(), c.failed.Load(), humanBytes(b), float64(b)/1e6/max(el.Seconds(), 1e-9))
	}
	for {
		select {
		case <-done:
			line()
			fmt.Fprintln(w)
			return
		case <-t.C:
			line()
		}
	}
}

// humanBytes formats n with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
