package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
)

func TestWrapCache(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	fs := gateway.FileServer(root)

	off := newEdge(&options{Cache: cacheOptions{Size: 0}}, logger)
	if h := off.wrapCache(fs); h == nil {
		t.Fatal("nil handler")
	} else if _, ok := h.(*cache.Handler); ok {
		t.Fatal("-cache-size 0 still caches")
	}

	e := newEdge(&options{Cache: cacheOptions{Size: 64 << 20}}, logger)
	h := e.wrapCache(fs)
	ch, ok := h.(*cache.Handler)
	if !ok || ch.MaxBytes != 64<<20 {
		t.Fatalf("wrapCache = %T, want a *cache.Handler of 64 MiB", h)
	}
	defer ch.Close()
	for range 2 {
		c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "f", RawPath: "f", Mode: "octet"})
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end, as a session does: the end comes once the
		// fetch is complete, so the second request is a hit and not a
		// join. (One Read left the fetch a moment to finish, which the
		// cache's stat of the file, faster than the open it replaced,
		// did not always give it.)
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "hello" {
			t.Fatalf("read %q, %v", b, err)
		}
	}
	mfs, err := e.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tftpgw_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["hit"] != 1 || got["miss"] != 1 || got["join"] != 0 || got["pass"] != 0 {
		t.Errorf("tftpgw_cache_requests_total = %v, want 1 hit and 1 miss", got)
	}
}
