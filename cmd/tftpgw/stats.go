package main

import (
	"context"
	"log/slog"

	"github.com/tftpgw/tftpgw/gateway"
)

// setupStats wires -stats-sink, -stats-interval and -metrics into srv.
// stop flushes and closes them. (Stub: not wired yet.)
func setupStats(ctx context.Context, srv *gateway.Server, logger *slog.Logger) (stop func(context.Context), err error) {
	return func(context.Context) {}, nil
}
