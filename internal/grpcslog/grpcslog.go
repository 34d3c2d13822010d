// Package grpcslog routes gRPC's own log (package grpclog) through a
// *slog.Logger, so that a command started with -log-format json writes
// only JSON lines.
//
// gRPC's INFO lines are logged at slog's debug level, WARNING at warn and
// ERROR (and FATAL) at error, with the attribute system=grpc and, when the
// message starts with one, gRPC's component ("[core] ...") in
// grpc_component. As gRPC's own logger does, only the severities selected
// by GRPC_GO_LOG_SEVERITY_LEVEL (info, warning or error; error if unset)
// are passed on, and V(l) reports l <= GRPC_GO_LOG_VERBOSITY_LEVEL (0 if
// unset); the slog logger's level applies on top, so gRPC's INFO lines
// need GRPC_GO_LOG_SEVERITY_LEVEL=info and a debug level.
//
// A command installs one [Logger] before gRPC runs, from an init function
// ([Install]), and points it at its slog logger once its flags are parsed
// ([Logger.SetLogger]), which may be done at any time.
package grpcslog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/grpclog"
)

// Severity is a gRPC log severity.
type Severity int

// gRPC's severities, in increasing order.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityError
)

// Options select what a [Logger] passes on.
type Options struct {
	// Severity is the least severity logged; the zero value logs all.
	Severity Severity
	// Verbosity is the verbosity level of V.
	Verbosity int
}

// OptionsFromEnv returns the options set by gRPC's environment variables
// GRPC_GO_LOG_SEVERITY_LEVEL (SeverityError if unset or not recognised,
// as for gRPC's default logger) and GRPC_GO_LOG_VERBOSITY_LEVEL.
func OptionsFromEnv() Options {
	o := Options{Severity: SeverityError}
	switch strings.ToLower(os.Getenv("GRPC_GO_LOG_SEVERITY_LEVEL")) {
	case "info":
		o.Severity = SeverityInfo
	case "warning":
		o.Severity = SeverityWarning
	}
	if v, err := strconv.Atoi(os.Getenv("GRPC_GO_LOG_VERBOSITY_LEVEL")); err == nil {
		o.Verbosity = v
	}
	return o
}

// Logger is a grpclog.LoggerV2 writing to a *slog.Logger. It is safe for
// concurrent use, SetLogger included.
type Logger struct {
	target atomic.Pointer[slog.Logger]
	opts   Options
	exit   func(code int) // os.Exit; tests replace it
}

var _ grpclog.LoggerV2 = (*Logger)(nil)

// New returns a Logger writing to l (slog.Default() while nil).
func New(l *slog.Logger, opts Options) *Logger {
	g := &Logger{opts: opts, exit: os.Exit}
	g.SetLogger(l)
	return g
}

// Install makes g gRPC's logger (grpclog.SetLoggerV2). gRPC reads its
// logger without synchronisation: call it from an init function, before
// any gRPC activity.
func Install(g *Logger) { grpclog.SetLoggerV2(g) }

// SetLogger makes g write to l from now on (slog.Default() if nil).
func (g *Logger) SetLogger(l *slog.Logger) { g.target.Store(l) }

func (g *Logger) logger() *slog.Logger {
	if l := g.target.Load(); l != nil {
		return l
	}
	return slog.Default()
}

var levels = [...]slog.Level{SeverityInfo: slog.LevelDebug, SeverityWarning: slog.LevelWarn, SeverityError: slog.LevelError}

// expected tells the messages gRPC logs as errors for what tftpgw's
// binaries take as normal: a server without the grpc.health.v1 service,
// which counts as healthy (docs/fleet.md). They are logged at info level:
// an ERROR at every start for a documented setup sends operators looking
// for a fault.
func expected(msg string) bool {
	return strings.Contains(msg, "health check is unimplemented at server side")
}

// log formats the message only if it will be written.
func (g *Logger) log(sev Severity, format func() string) {
	if sev < g.opts.Severity {
		return
	}
	l, level, ctx := g.logger(), levels[sev], context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimRight(format(), "\n")
	if sev == SeverityError && expected(msg) {
		if level = slog.LevelInfo; !l.Enabled(ctx, level) {
			return
		}
	}
	attrs := []slog.Attr{slog.String("system", "grpc")}
	if rest, ok := strings.CutPrefix(msg, "["); ok {
		if comp, m, ok := strings.Cut(rest, "] "); ok && comp != "" && !strings.ContainsAny(comp, " []") {
			attrs = append(attrs, slog.String("grpc_component", comp))
			msg = m
		}
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// Info logs at debug level; arguments as in fmt.Print.
func (g *Logger) Info(args ...any) { g.log(SeverityInfo, func() string { return fmt.Sprint(args...) }) }

// Infoln logs at debug level; arguments as in fmt.Println.
func (g *Logger) Infoln(args ...any) {
	g.log(SeverityInfo, func() string { return fmt.Sprintln(args...) })
}

// Infof logs at debug level; arguments as in fmt.Printf.
func (g *Logger) Infof(format string, args ...any) {
	g.log(SeverityInfo, func() string { return fmt.Sprintf(format, args...) })
}

// Warning logs at warn level; arguments as in fmt.Print.
func (g *Logger) Warning(args ...any) {
	g.log(SeverityWarning, func() string { return fmt.Sprint(args...) })
}

// Warningln logs at warn level; arguments as in fmt.Println.
func (g *Logger) Warningln(args ...any) {
	g.log(SeverityWarning, func() string { return fmt.Sprintln(args...) })
}

// Warningf logs at warn level; arguments as in fmt.Printf.
func (g *Logger) Warningf(format string, args ...any) {
	g.log(SeverityWarning, func() string { return fmt.Sprintf(format, args...) })
}

// Error logs at error level; arguments as in fmt.Print.
func (g *Logger) Error(args ...any) {
	g.log(SeverityError, func() string { return fmt.Sprint(args...) })
}

// Errorln logs at error level; arguments as in fmt.Println.
func (g *Logger) Errorln(args ...any) {
	g.log(SeverityError, func() string { return fmt.Sprintln(args...) })
}

// Errorf logs at error level; arguments as in fmt.Printf.
func (g *Logger) Errorf(format string, args ...any) {
	g.log(SeverityError, func() string { return fmt.Sprintf(format, args...) })
}

// Fatal logs at error level, whatever the options, and exits with status
// 1, as grpclog.LoggerV2 requires; arguments as in fmt.Print.
func (g *Logger) Fatal(args ...any) { g.fatal(fmt.Sprint(args...)) }

// Fatalln is Fatal with arguments as in fmt.Println.
func (g *Logger) Fatalln(args ...any) { g.fatal(fmt.Sprintln(args...)) }

// Fatalf is Fatal with arguments as in fmt.Printf.
func (g *Logger) Fatalf(format string, args ...any) { g.fatal(fmt.Sprintf(format, args...)) }

func (g *Logger) fatal(msg string) {
	g.logger().LogAttrs(context.Background(), slog.LevelError, strings.TrimRight(msg, "\n"),
		slog.String("system", "grpc"), slog.Bool("fatal", true))
	g.exit(1)
}

// V reports whether verbosity level l is enabled.
func (g *Logger) V(l int) bool { return l <= g.opts.Verbosity }
