package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/policy"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
	"github.com/tftpgw/tftpgw/gateway/tracing"
)

// live is the part of the configuration a reload changes while tftpgw
// serves: the policy with the limits (the server's admission hook) and the
// rewrite rules in front of the content's handler. Each is swapped whole,
// so a request meets the old configuration or the new one, never a mix;
// sessions already running keep what they negotiated.
type live struct {
	content gateway.Handler // the content's handler, behind the rewrite rules

	policy  atomic.Pointer[policy.Policy]
	handler atomic.Pointer[gateway.Handler] // the rewrite rules' middleware around content

	// store makes the write handler uploads are stored by (-root's
	// directory, or -backend's ContentService.Write), with the upload
	// options; writer is it behind the upload policy, or one that refuses
	// every upload.
	store  func(o *options) gateway.WriteHandler
	writer atomic.Pointer[gateway.WriteHandler]
}

// refuseUploads is the write handler of a configuration without
// -upload-allow.
var refuseUploads gateway.WriteHandler = gateway.WriteHandlerFunc(func(context.Context, *gateway.Request) (gateway.Upload, error) {
	return nil, gateway.ErrUploadRefused
})

// set installs the reloadable part of o.
func (l *live) set(o *options) error {
	p, err := o.policy()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	rw, err := rewrite.New(o.Rewrite)
	if err != nil {
		return err
	}
	h := rw.Middleware()(l.content)
	w := refuseUploads
	if len(o.Upload.Allow) > 0 && l.store != nil {
		w = o.uploadPolicy().Wrap(l.store(o))
	}
	l.policy.Store(p)
	l.handler.Store(&h)
	l.writer.Store(&w)
	return nil
}

// ReceiveTFTP takes an upload through the upload policy of the moment.
func (l *live) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	return (*l.writer.Load()).ReceiveTFTP(ctx, req)
}

// ServeTFTP serves req through the rewrite rules of the moment.
func (l *live) ServeTFTP(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
	return (*l.handler.Load()).ServeTFTP(ctx, req)
}

// Admit is the server's admission hook: the policy of the moment.
func (l *live) Admit(a gateway.Arrival) gateway.Admission { return l.policy.Load().Admit(a) }

// reloader reloads the configuration when a signal (SIGHUP) arrives.
type reloader struct {
	signals <-chan os.Signal
	level   *slog.LevelVar // the logger's level

	ok, failed prometheus.Counter
	lastOK     prometheus.Gauge
}

// reloadable are the flags (and their keys) a reload changes; every other
// one changes only when tftpgw restarts.
var reloadable = []string{
	"max-sessions", "max-sessions-per-client", "client-rate",
	"max-blksize", "max-windowsize", "refuse-options", "log-level",
	"upload-allow", "upload-max-size", "upload-overwrite", "upload-path",
}

// register adds the reload metrics to reg.
func (r *reloader) register(reg prometheus.Registerer) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tftpgw_config_reloads_total",
		Help: "Configuration reloads (SIGHUP) by result: ok, or error (the file was refused and the running configuration stayed).",
	}, []string{"result"})
	r.ok, r.failed = c.WithLabelValues("ok"), c.WithLabelValues("error")
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tftpgw_config_last_reload_successful",
		Help: "1 if the last configuration reload succeeded (or none was tried), 0 if it was refused.",
	})
	r.lastOK.Set(1)
	reg.MustRegister(c, r.lastOK)
}

// reload reads the configuration again (the same command line and -config
// file) and installs its reloadable part in l. A configuration that does
// not validate is refused, logged and counted, and the running one stays.
// Settings that change only at a restart are named in the log when they
// differ from the running ones.
func (e *edge) reload(r *reloader, l *live) {
	if e.root != nil {
		e.root.check(time.Now(), true) // a directory swapped in at -root's path is served now
	}
	if e.opts.ConfigFile == "" {
		if e.root == nil {
			e.logger.Warn("SIGHUP: nothing to reload without -config")
		} else {
			e.logger.Info("SIGHUP: -root looked at; nothing else to reload without -config", "root", e.opts.Serving.Root)
		}
		return
	}
	refuse := func(err error) {
		e.logger.Error("configuration reload refused; the running configuration stays", "file", e.opts.ConfigFile, "err", err)
		if r.failed != nil {
			r.failed.Inc()
			r.lastOK.Set(0)
		}
	}
	o, err := loadOptions(e.opts.args, io.Discard)
	if err != nil {
		refuse(err)
		return
	}
	if err := l.set(o); err != nil {
		refuse(err) // validate checked them: not expected
		return
	}
	lv, _ := levelOf(o.Log.Level) // validated
	r.level.Set(lv)
	if r.ok != nil {
		r.ok.Inc()
		r.lastOK.Set(1)
	}
	e.logger.Info("configuration reloaded", "file", o.ConfigFile,
		"rewrite_rules", len(o.Rewrite), "policy_rules", len(o.Policy), "log_level", lv.String())
	if len(o.Upload.Allow) > 0 && !e.uploads {
		e.logger.Warn("configuration reload: uploads were off when tftpgw started (no upload.allow); they start with it, after a restart")
	}
	if keys := restartOnly(e.opts, o); len(keys) > 0 {
		e.logger.Warn("configuration reload: these settings change only when tftpgw restarts; still running with the old values",
			"keys", keys)
	}
}

// restartOnly returns the keys (or flags, without a file) whose values
// differ between the running options and next and that a reload does not
// change.
func restartOnly(running, next *options) []string {
	a, b := flagValues(running), flagValues(next)
	var out []string
	for name, v := range a {
		if b[name] == v || slices.Contains(reloadable, name) || name == "config" || name == "check" {
			continue
		}
		if k, ok := flagKeys[name]; ok && next.file != nil {
			out = append(out, k)
		} else {
			out = append(out, "-"+name)
		}
	}
	slices.Sort(out)
	return out
}

// flagValues returns the value of every flag in o, as -h would print it.
func flagValues(o *options) map[string]string {
	var tmp options
	fs := tmp.flagSet(io.Discard) // binds the flags to tmp's fields
	tmp = *o                      // which now hold o's values
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = f.Value.String() })
	return m
}

// levelOf parses a -log-level.
func levelOf(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("-log-level: %w", err)
	}
	return l, nil
}

// checkOptions is -check: what validate does not check without serving,
// short of binding the sockets: -user exists and can be switched to (see
// checkUser), the root directory opens, the TLS files and token files read.
func checkOptions(o *options) error {
	var errs []error
	if err := o.checkUser(os.Geteuid()); err != nil {
		errs = append(errs, err)
	}
	if o.Serving.Root != "" {
		r, err := os.OpenRoot(o.Serving.Root)
		if err != nil {
			errs = append(errs, fmt.Errorf("-root: %w", err))
		} else {
			r.Close()
		}
	}
	if _, err := o.HTTP.certificate(); err != nil {
		errs = append(errs, err)
	}
	for _, c := range []struct {
		name string
		c    clientOptions
	}{{"backend", o.Backend.clientOptions}, {"stats-sink", o.Stats.Sink}} {
		if c.c.Target == "" {
			continue
		}
		if _, err := clientTLS(c.name, c.c); err != nil {
			errs = append(errs, err)
		}
		if f := c.c.TokenFile; f != "" {
			if _, err := os.ReadFile(f); err != nil {
				errs = append(errs, fmt.Errorf("-%s-token-file: %w", c.name, err))
			}
		}
	}
	if t, err := tracing.FromEnv(context.Background(), tracing.Config{}); err != nil {
		errs = append(errs, err)
	} else {
		t.Shutdown(context.Background()) // nothing was traced
	}
	return o.nameKeys(errors.Join(errs...))
}
