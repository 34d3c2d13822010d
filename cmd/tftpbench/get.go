package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// runGet implements "tftpbench get [flags] HOST:PORT REMOTE [LOCAL]".
func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tftpbench get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o tftpclient.Options
	mode := transferFlags(fs, &o)
	quiet := fs.Bool("q", false, "do not print the transfer summary on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: tftpbench get [flags] HOST:PORT REMOTE [LOCAL]

Downloads REMOTE into LOCAL (default: the base name of REMOTE; "-" writes
to stdout).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fs.Usage()
		return fmt.Errorf("%w: get needs HOST:PORT REMOTE [LOCAL]", errUsage)
	}
	if err := finishTransferFlags(&o, *mode); err != nil {
		return err
	}
	server, remote := fs.Arg(0), fs.Arg(1)
	if err := checkServer(server); err != nil {
		return err
	}
	local := fs.Arg(2)
	if local == "" {
		local = path.Base(strings.ReplaceAll(remote, `\`, "/"))
		if local == "/" || local == "." || local == ".." {
			return fmt.Errorf("%w: cannot derive a local name from %q; give LOCAL", errUsage, remote)
		}
	}

	// The download goes to a temporary file next to LOCAL, renamed over it
	// once complete: a failed transfer neither leaves a partial file nor
	// destroys a file LOCAL already named.
	var (
		w   io.Writer = stdout
		f   *os.File
		err error
	)
	if local != "-" {
		f, err = os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".tftpbench-*")
		if err != nil {
			return err
		}
		w = f
	}
	res, err := tftpclient.Get(ctx, server, remote, w, o)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if cerr := os.Chmod(f.Name(), 0o644); cerr != nil { // CreateTemp makes it 0600
				err = cerr
			} else if cerr := os.Rename(f.Name(), local); cerr != nil {
				err = cerr
			}
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", remote, err)
	}
	if !*quiet {
		mbps := 0.0
		if s := res.Duration.Seconds(); s > 0 {
			mbps = float64(res.Size) / 1e6 / s
		}
		fmt.Fprintf(stderr, "%s: %d bytes in %v (%.2f MB/s), first byte after %v, %d packets, %d duplicates, from %v",
			remote, res.Size, res.Duration.Round(time.Microsecond), mbps, res.TimeToFirst.Round(time.Microsecond), res.Packets, res.Duplicates, res.ServerAddr)
		if res.Negotiated != nil {
			fmt.Fprintf(stderr, ", options %v", res.Negotiated)
		}
		fmt.Fprintln(stderr)
	}
	return nil
}
