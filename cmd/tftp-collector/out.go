package main

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// outFile is the -out file, which SIGHUP reopens at its path: after
// logrotate renamed it, the events that follow go to a new file there.
// Each event is one Write (collector.Config.Out), and a Write goes whole
// to one file, so a line is never split between the old file and the new,
// and none is lost.
type outFile struct {
	path string
	mu   sync.Mutex // guards f; held across a Write
	f    *os.File
}

// openOut opens path for appending, creating it if need be.
func openOut(path string) (*outFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &outFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open output: %w", err)
	}
	return f, nil
}

// Write appends b to the current file.
func (o *outFile) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f.Write(b)
}

// reopen opens the path again and writes there from now on, then closes
// the old file. If the path cannot be opened, writing goes on to the old
// file. It logs what it did.
func (o *outFile) reopen(logger *slog.Logger) {
	f, err := openAppend(o.path)
	if err != nil {
		logger.Error("SIGHUP: cannot reopen the output file; still writing to the old one", "out", o.path, "err", err)
		return
	}
	o.mu.Lock()
	old := o.f
	o.f = f
	o.mu.Unlock()
	logger.Info("SIGHUP: reopened the output file; new events go to the file now at its path", "out", o.path)
	if err := old.Close(); err != nil {
		logger.Warn("closing the old output file", "out", o.path, "err", err)
	}
}

// Close closes the current file.
func (o *outFile) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f.Close()
}
