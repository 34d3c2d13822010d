package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// errUsage marks command-line errors (exit code 2).
var errUsage = errors.New("usage")

// checkServer refuses a server address without a port, before any
// transfer would fail on it.
func checkServer(server string) error {
	if _, port, err := net.SplitHostPort(server); err != nil || port == "" {
		return fmt.Errorf("%w: server %q: want HOST:PORT", errUsage, server)
	}
	return nil
}

// config is the parsed command line of the load generator.
type config struct {
	server      string
	files       []string
	opts        tftpclient.Options
	concurrency int
	n           int           // total transfers; 0 = unbounded (duration bounds the run)
	duration    time.Duration // 0 = unbounded (n bounds the run)
	verifyFile  string
	sha256      []byte // expected digest, nil = no verification
	json        bool
	progress    bool
}

// fileList is a repeatable, comma-separated flag.
type fileList []string

func (f *fileList) String() string { return strings.Join(*f, ",") }

func (f *fileList) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f = append(*f, p)
		}
	}
	return nil
}

// transferFlags registers the per-transfer flags shared by the load
// generator and "get" on fs.
func transferFlags(fs *flag.FlagSet, o *tftpclient.Options) (mode *string) {
	fs.IntVar(&o.BlockSize, "blksize", 0, "blksize option to request (8..65464; 0 = none, 512-byte blocks)")
	fs.IntVar(&o.WindowSize, "windowsize", 0, "windowsize option to request (1..65535; 0 = none, lock-step)")
	fs.IntVar(&o.Timeout, "timeout", 0, "timeout option to request in seconds (1..255; 0 = none, client waits 2s)")
	fs.BoolVar(&o.TSize, "tsize", true, "request tsize")
	fs.IntVar(&o.Retries, "retries", tftpclient.DefaultRetries, "retransmissions of the client's last packet before giving up (0 = none)")
	fs.IntVar(&o.RecvBuffer, "rcvbuf", tftpclient.DefaultRecvBuffer, "socket receive buffer `BYTES` (SO_RCVBUF)")
	return fs.String("mode", "octet", "transfer mode: octet or netascii (netascii data is not translated)")
}

// finishTransferFlags validates the shared flags after parsing.
func finishTransferFlags(o *tftpclient.Options, mode string) error {
	switch strings.ToLower(mode) {
	case "octet", "netascii":
		o.Mode = strings.ToLower(mode)
	default:
		return fmt.Errorf("%w: -mode must be octet or netascii, not %q", errUsage, mode)
	}
	if o.BlockSize != 0 && (o.BlockSize < tftpclient.MinBlockSize || o.BlockSize > tftpclient.MaxBlockSize) {
		return fmt.Errorf("%w: -blksize must be 0 or %d..%d", errUsage, tftpclient.MinBlockSize, tftpclient.MaxBlockSize)
	}
	if o.WindowSize < 0 || o.WindowSize > tftpclient.MaxWindowSize {
		return fmt.Errorf("%w: -windowsize must be 0..%d", errUsage, tftpclient.MaxWindowSize)
	}
	if o.Timeout < 0 || o.Timeout > tftpclient.MaxTimeout {
		return fmt.Errorf("%w: -timeout must be 0..%d", errUsage, tftpclient.MaxTimeout)
	}
	if o.Retries < 0 {
		return fmt.Errorf("%w: -retries must be >= 0", errUsage)
	}
	if o.Retries == 0 {
		o.Retries = -1 // tftpclient: negative means none
	}
	if o.RecvBuffer < 0 {
		return fmt.Errorf("%w: -rcvbuf must be >= 0", errUsage)
	}
	return nil
}

// parseFlags parses the load generator's command line. stderrIsTerminal
// is the default of -progress.
func parseFlags(args []string, stderr io.Writer, stderrIsTerminal bool) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("tftpbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage:
  tftpbench -server HOST:PORT -file PATH [-c N] [-n N | -d DURATION] [flags]
  tftpbench get [flags] HOST:PORT REMOTE [LOCAL]

Flags:
`)
		fs.PrintDefaults()
	}
	var files fileList
	var sum string
	fs.StringVar(&cfg.server, "server", "127.0.0.1:69", "TFTP server `HOST:PORT`")
	fs.Var(&files, "file", "remote `PATH` to read; repeatable or comma-separated, rotated across transfers")
	mode := transferFlags(fs, &cfg.opts)
	fs.IntVar(&cfg.concurrency, "c", 1, "concurrent transfers")
	fs.IntVar(&cfg.n, "n", 0, "total transfers (default: -c, unless -d is given)")
	fs.DurationVar(&cfg.duration, "d", 0, "stop starting transfers after `DURATION` (in-flight transfers finish)")
	fs.StringVar(&cfg.verifyFile, "verify-file", "", "compare every transfer against this local file")
	fs.StringVar(&sum, "sha256", "", "compare every transfer against this SHA-256 `HEX` digest")
	fs.BoolVar(&cfg.json, "json", false, "print the summary as JSON on stdout")
	fs.BoolVar(&cfg.progress, "progress", stderrIsTerminal, "live progress line on stderr (default on when stderr is a terminal)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	cfg.files = files
	if len(cfg.files) == 0 {
		return nil, fmt.Errorf("%w: -file is required", errUsage)
	}
	if err := finishTransferFlags(&cfg.opts, *mode); err != nil {
		return nil, err
	}
	if cfg.concurrency < 1 {
		return nil, fmt.Errorf("%w: -c must be >= 1", errUsage)
	}
	if cfg.n < 0 || cfg.duration < 0 {
		return nil, fmt.Errorf("%w: -n and -d must not be negative", errUsage)
	}
	if cfg.n == 0 && cfg.duration == 0 {
		cfg.n = cfg.concurrency
	}
	if cfg.verifyFile != "" && sum != "" {
		return nil, fmt.Errorf("%w: use -verify-file or -sha256, not both", errUsage)
	}
	if err := checkServer(cfg.server); err != nil {
		return nil, err
	}
	if cfg.verifyFile != "" {
		if fi, err := os.Stat(cfg.verifyFile); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: -verify-file %q: not a readable regular file", errUsage, cfg.verifyFile)
		}
	}
	if sum != "" {
		b, err := hex.DecodeString(sum)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%w: -sha256 must be %d hex digits", errUsage, 2*sha256.Size)
		}
		cfg.sha256 = b
	}
	return cfg, nil
}
