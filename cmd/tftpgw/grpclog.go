package main

import (
	"log/slog"

	"github.com/tftpgw/tftpgw/internal/grpcslog"
)

// installGRPCLog routes gRPC's own log through logger, so that it has the
// format and level of -log-format and -log-level (see internal/grpcslog;
// GRPC_GO_LOG_SEVERITY_LEVEL and GRPC_GO_LOG_VERBOSITY_LEVEL still choose
// what gRPC logs). Call it before any gRPC activity: gRPC reads its logger
// without a lock.
func installGRPCLog(logger *slog.Logger) {
	grpcslog.Install(grpcslog.New(logger, grpcslog.OptionsFromEnv()))
}
