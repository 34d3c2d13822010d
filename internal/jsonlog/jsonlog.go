// Package jsonlog holds the log/slog settings of the JSON log format that
// the tftpgw binaries share (-log-format json).
package jsonlog

import "log/slog"

// DurationsInSeconds is a [slog.HandlerOptions] ReplaceAttr function that
// writes every duration value as a float number of seconds (12.345678ms
// becomes 0.012345678), where [slog.JSONHandler] would write integer
// nanoseconds: jq, Loki and Elasticsearch users expect seconds. The key is
// kept. The handler calls it for attributes inside groups too, so nested
// durations are converted as well. Other values are returned unchanged.
//
// It is meant for JSON handlers only: the text handler's "12.345678ms"
// already reads well.
func DurationsInSeconds(groups []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}
