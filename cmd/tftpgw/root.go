package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// rootCheckInterval is how often, at most, servedRoot looks whether -root's
// path names another directory than the one it serves.
const rootCheckInterval = time.Second

// servedRoot is -root's content: a gateway.FileServer of the directory
// -root names. It follows the path: when the path comes to name another
// directory (a symbolic link flipped to a new release, a directory renamed
// into place), the new one is served from the first request made a second
// or more after the last look (at once on SIGHUP), as a server that opens
// every file by its full path would. The old directory stays open until
// the requests that began on it are done with it (the garbage collector
// closes it).
//
// While the path names nothing that opens (between the two renames of a
// swap, or a directory -user cannot search), the directory served so far
// stays, and a warning says so once.
type servedRoot struct {
	path   string
	logger *slog.Logger

	cur   atomic.Pointer[rootVersion]
	start time.Time    // when it was opened: looks are timed from it, on the monotonic clock
	next  atomic.Int64 // when to look again, in nanoseconds since start

	mu     sync.Mutex // one look at a time
	failed bool       // the last look could not open the path (warned)
}

// rootVersion is one directory served.
type rootVersion struct {
	root *os.Root
	h    gateway.StatHandler // FileServer(root)
	fi   os.FileInfo         // the directory's, to compare with the path's
}

// openServedRoot opens path as the root to serve.
func openServedRoot(path string, logger *slog.Logger) (*servedRoot, error) {
	s := &servedRoot{path: path, logger: logger, start: time.Now()}
	v, err := openRootVersion(path)
	if err != nil {
		return nil, err
	}
	s.cur.Store(v)
	s.next.Store(int64(rootCheckInterval))
	return s, nil
}

func openRootVersion(path string) (*rootVersion, error) {
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, err
	}
	h, ok := gateway.FileServer(root).(gateway.StatHandler)
	if !ok {
		root.Close()
		return nil, fmt.Errorf("gateway.FileServer is not a StatHandler") // not expected
	}
	return &rootVersion{root: root, h: h, fi: fi}, nil
}

// Root is the directory served at the moment.
func (s *servedRoot) Root() *os.Root { return s.cur.Load().root }

// ServeTFTP serves req from the directory the path names.
func (s *servedRoot) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	return s.current(req.At).h.ServeTFTP(ctx, req)
}

// StatContent is FileServer's, from the directory the path names: the
// edge cache revalidates through it, and a file of a new directory is
// another file (another inode), so nothing cached from the old one is
// served for it.
func (s *servedRoot) StatContent(ctx context.Context, req *gateway.Request) (int64, gateway.ContentInfo, error) {
	return s.current(req.At).h.StatContent(ctx, req)
}

// current returns the version to serve a request that arrived at at (now
// when zero), after a look at the path if the last one is a second old.
// Arrival times carry a monotonic reading (gateway.Request.At), so a step
// of the wall clock does not stop the looks.
func (s *servedRoot) current(at time.Time) *rootVersion {
	if at.IsZero() {
		at = time.Now()
	}
	if int64(at.Sub(s.start)) >= s.next.Load() {
		s.check(at, false)
	}
	return s.cur.Load()
}

// check looks whether the path names another directory than the one
// served, and serves it if so. force looks even if the last look is recent
// (SIGHUP).
func (s *servedRoot) check(now time.Time, force bool) {
	if !s.mu.TryLock() {
		if !force {
			return // another request is looking: serve what is there
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	since := int64(now.Sub(s.start))
	if !force && since < s.next.Load() {
		return
	}
	s.next.Store(since + int64(rootCheckInterval))
	cur := s.cur.Load()
	fi, err := os.Stat(s.path)
	if err == nil && os.SameFile(fi, cur.fi) {
		s.recovered()
		return
	}
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", s.path)
	}
	var v *rootVersion
	if err == nil {
		v, err = openRootVersion(s.path)
	}
	if err != nil {
		if !s.failed {
			s.failed = true
			s.logger.Warn("-root: the path does not open; still serving the directory opened before", "root", s.path, "err", err)
		}
		return
	}
	s.cur.Store(v)
	s.failed = false
	s.logger.Info("-root names another directory: serving it", "root", s.path)
}

// recovered notes that the path opens again, on the directory served.
func (s *servedRoot) recovered() {
	if s.failed {
		s.failed = false
		s.logger.Info("-root opens again", "root", s.path)
	}
}

// Close closes the directory served.
func (s *servedRoot) Close() error { return s.cur.Load().root.Close() }
