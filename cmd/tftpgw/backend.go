package main

import (
	"context"
	"log/slog"

	"github.com/tftpgw/tftpgw/gateway"
)

// remoteHandler returns the Handler that reads content from a gRPC
// ContentService when -backend is set, or nil when it is not. stop releases
// its connections. (Stub: the -backend flags are not wired yet.)
func remoteHandler(ctx context.Context, logger *slog.Logger) (h gateway.Handler, stop func(), err error) {
	return nil, func() {}, nil
}
