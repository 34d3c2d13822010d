package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"sync"

	"github.com/tftpgw/tftpgw/internal/grpcslog"
)

// grpcLog routes gRPC's own log through slog, in the format and at the
// level of -log-format and -log-level (see internal/grpcslog): installed
// before main runs, so before any gRPC activity, it writes through a
// handler made from the flags once they are parsed; setupStats then points
// it at the server's logger.
var grpcLog = grpcslog.New(slog.New(&flagHandler{}), grpcslog.OptionsFromEnv())

func init() { grpcslog.Install(grpcLog) }

// flagHandler is the slog handler that -log-format and -log-level
// describe, made when first used after the flags are parsed (before, a
// text handler at info level).
type flagHandler struct {
	once sync.Once
	h    slog.Handler
}

func (f *flagHandler) handler() slog.Handler {
	if !flag.Parsed() {
		return slog.NewTextHandler(os.Stderr, nil)
	}
	f.once.Do(func() {
		l, err := newLogger(os.Stderr, *flagLogFormat, *flagLogLevel)
		if err != nil { // main refuses these flags before any gRPC call
			l = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		f.h = l.Handler()
	})
	return f.h
}

func (f *flagHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return f.handler().Enabled(ctx, l)
}

func (f *flagHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.handler().Handle(ctx, r)
}

func (f *flagHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return f.handler().WithAttrs(attrs) }

func (f *flagHandler) WithGroup(name string) slog.Handler { return f.handler().WithGroup(name) }
