package main

import "github.com/tftpgw/tftpgw/internal/grpcslog"

// grpcLog routes gRPC's own log through slog (see internal/grpcslog). It
// is installed before main runs, so before any gRPC activity, and writes
// to slog.Default() until it is given the command's logger.
var grpcLog = grpcslog.New(nil, grpcslog.OptionsFromEnv())

func init() { grpcslog.Install(grpcLog) }
