// Command tftpbench is a TFTP load generator and download client.
//
// Load generation:
//
//	tftpbench -server HOST:PORT -file PATH [-c N] [-n N | -d DURATION] [flags]
//
// Upload load generation (TFTP write requests of a generated file):
//
//	tftpbench -put -size BYTES -server HOST:PORT -file PATH [-c N] [-n N | -d DURATION] [flags]
//
// Single download:
//
//	tftpbench get [flags] HOST:PORT REMOTE [LOCAL]
//
// See README.md for all flags and the summary fields.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errFailed is returned by run when at least one transfer failed or did not
// verify; the summary has already been printed.
var errFailed = errors.New("some transfers failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainCode(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainCode runs the command and returns the process exit code: 0 on
// success, 1 when transfers failed, 2 on usage errors.
func mainCode(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "get" {
		err := runGet(ctx, args[1:], stdout, stderr)
		return exitCode(err, stderr)
	}
	cfg, err := parseFlags(args, stderr, isTerminal(os.Stderr))
	if err != nil {
		return exitCode(err, stderr)
	}
	return exitCode(run(ctx, cfg, stdout, stderr), stderr)
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "tftpbench:", err)
		return 2
	case errors.Is(err, errFailed):
		return 1
	default:
		fmt.Fprintln(stderr, "tftpbench:", err)
		return 1
	}
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
