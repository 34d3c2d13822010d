package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tftpgw/tftpgw/internal/tftpclient/tftpclienttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPercentile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{7}, 50, 7},
		{"single p99", []time.Duration{7}, 99, 7},
		{"hundred p50", hundred, 50, 50},
		{"hundred p90", hundred, 90, 90},
		{"hundred p99", hundred, 99, 99},
		{"hundred max", hundred, 100, 100},
		{"ten p99", hundred[:10], 99, 10},
		{"ten p50", hundred[:10], 50, 5},
		{"three p50", []time.Duration{1, 2, 3}, 50, 2},
		{"two p50", []time.Duration{1, 2}, 50, 1},
		{"tiny p", hundred, 0.001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	unsorted := []time.Duration{5 * time.Second, time.Second, 3 * time.Second}
	if p := percentilesOf(unsorted); p.P50 != 3 || p.Max != 5 {
		t.Errorf("percentilesOf = %+v", p)
	}
}

func TestParseFlags(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	t.Run("defaults", func(t *testing.T) {
		cfg, err := parseFlags([]string{"-file", "a"}, io.Discard, false)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.server != "127.0.0.1:69" || cfg.concurrency != 1 || cfg.n != 1 || cfg.duration != 0 ||
			!cfg.opts.TSize || cfg.opts.Mode != "octet" || cfg.progress || cfg.json {
			t.Errorf("cfg = %+v", cfg)
		}
	})
	t.Run("progress defaults to terminal", func(t *testing.T) {
		cfg, err := parseFlags([]string{"-file", "a"}, io.Discard, true)
		if err != nil || !cfg.progress {
			t.Fatalf("cfg = %+v, %v", cfg, err)
		}
		cfg, err = parseFlags([]string{"-file", "a", "-progress=false"}, io.Discard, true)
		if err != nil || cfg.progress {
			t.Fatalf("cfg = %+v, %v", cfg, err)
		}
	})
	t.Run("all", func(t *testing.T) {
		cfg, err := parseFlags([]string{
			"-server", "[::1]:6969", "-file", "a,b", "-file", "c", "-blksize", "1468", "-windowsize", "16",
			"-timeout", "3", "-tsize=false", "-mode", "NETASCII", "-c", "8", "-d", "2s", "-sha256", sum,
			"-json", "-rcvbuf", "1024", "-retries", "0",
		}, io.Discard, false)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.server != "[::1]:6969" || !slices.Equal(cfg.files, []string{"a", "b", "c"}) ||
			cfg.opts.BlockSize != 1468 || cfg.opts.WindowSize != 16 || cfg.opts.Timeout != 3 || cfg.opts.TSize ||
			cfg.opts.Mode != "netascii" || cfg.concurrency != 8 || cfg.n != 0 || cfg.duration != 2*time.Second ||
			hex.EncodeToString(cfg.sha256) != sum || !cfg.json || cfg.opts.RecvBuffer != 1024 || cfg.opts.Retries != -1 {
			t.Errorf("cfg = %+v", cfg)
		}
	})
	t.Run("n defaults to c", func(t *testing.T) {
		cfg, err := parseFlags([]string{"-file", "a", "-c", "4"}, io.Discard, false)
		if err != nil || cfg.n != 4 {
			t.Fatalf("cfg = %+v, %v", cfg, err)
		}
	})
	for _, args := range [][]string{
		{},
		{"-file", "a", "-c", "0"},
		{"-file", "a", "-n", "-1"},
		{"-file", "a", "-mode", "mail"},
		{"-file", "a", "-blksize", "4"},
		{"-file", "a", "-windowsize", "70000"},
		{"-file", "a", "-timeout", "300"},
		{"-file", "a", "-sha256", "xyz"},
		{"-file", "a", "-sha256", sum, "-verify-file", "x"},
		{"-file", "a", "extra"},
		{"-nope"},
	} {
		if _, err := parseFlags(args, io.Discard, false); !errors.Is(err, errUsage) {
			t.Errorf("parseFlags(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestSummaryJSONShape(t *testing.T) {
	cfg := &config{server: "s", files: []string{"f"}, concurrency: 2}
	s := summarize(cfg, []record{
		{duration: time.Second, ttfb: time.Millisecond, bytes: 100, packets: 1},
		{err: errors.New("boom"), bytes: 5},
		{mismatch: true, bytes: 100},
	}, 2*time.Second, time.Second, time.Second)
	var buf bytes.Buffer
	if err := writeJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{
		"blksize", "bytes", "concurrency", "cpu_seconds", "cpu_system_seconds", "cpu_user_seconds",
		"duplicates", "elapsed_seconds", "errors", "failed", "files", "latency_seconds", "mb_per_second",
		"mode", "ok", "packets", "server", "transfers", "ttfb_seconds", "verify_mismatches", "windowsize",
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("JSON keys = %v\nwant %v", keys, want)
	}
	if lat := m["latency_seconds"].(map[string]any); !reflect.DeepEqual(lat, map[string]any{"p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0}) {
		t.Errorf("latency_seconds = %v", lat)
	}
	if m["ok"] != 1.0 || m["failed"] != 2.0 || m["verify_mismatches"] != 1.0 || m["bytes"] != 205.0 || m["mb_per_second"] != 205/1e6/2 {
		t.Errorf("summary = %s", buf.String())
	}
	if e := m["errors"].(map[string]any); e["boom"] != 1.0 || e["verification failed: content differs"] != 1.0 {
		t.Errorf("errors = %v", e)
	}
}

func testData() []byte {
	b := make([]byte, 100_000)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestRunEndToEnd(t *testing.T) {
	data := testData()
	other := append([]byte(nil), data...)
	other[500] ^= 1
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"a": data, "b": data, "bad": other}})
	local := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		ok, fail int
	}{
		{"verify file", []string{"-file", "a,b", "-c", "3", "-n", "7", "-blksize", "1024", "-windowsize", "8", "-verify-file", local}, 0, 7, 0},
		{"sha256", []string{"-file", "a", "-c", "2", "-sha256", hex.EncodeToString(sum[:])}, 0, 2, 0},
		{"mismatch", []string{"-file", "a,bad", "-n", "4", "-verify-file", local}, 1, 2, 2},
		{"missing file", []string{"-file", "nope", "-n", "2"}, 1, 0, 2},
		{"duration", []string{"-file", "a", "-c", "2", "-d", "200ms", "-windowsize", "16"}, 0, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-server", srv.Addr(), "-json", "-progress=false", "-retries", "1"}, tt.args...)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code := mainCode(ctx, args, nil, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			var s summary
			if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
				t.Fatalf("bad JSON %q: %v", stdout.String(), err)
			}
			if tt.ok >= 0 && (s.OK != tt.ok || s.Failed != tt.fail) {
				t.Errorf("ok %d failed %d, want %d %d: %s", s.OK, s.Failed, tt.ok, tt.fail, stdout.String())
			}
			if tt.ok < 0 && (s.OK < 2 || s.Failed != 0) {
				t.Errorf("duration run: ok %d failed %d", s.OK, s.Failed)
			}
			if s.OK > 0 && (s.Latency.P50 <= 0 || s.Latency.Max < s.Latency.P99 || s.TTFB.P50 <= 0 || s.MBPerSecond <= 0) {
				t.Errorf("implausible summary: %+v", s)
			}
			if tt.name == "missing file" && s.Errors["server error 1: File not found"] != 2 {
				t.Errorf("errors = %v", s.Errors)
			}
		})
	}
	t.Run("text", func(t *testing.T) {
		var stdout bytes.Buffer
		code := mainCode(t.Context(), []string{"-server", srv.Addr(), "-file", "a", "-progress"}, nil, &stdout, io.Discard)
		if code != 0 || !strings.Contains(stdout.String(), "transfers   1 ok, 0 failed") || !strings.Contains(stdout.String(), "latency") {
			t.Errorf("code %d, output:\n%s", code, stdout.String())
		}
	})
}

func TestGetSubcommand(t *testing.T) {
	data := testData()
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"dir/file.bin": data}})
	dir := t.TempDir()
	t.Chdir(dir)

	var stdout, stderr bytes.Buffer
	if code := mainCode(t.Context(), []string{"get", "-blksize", "1468", "-windowsize", "4", srv.Addr(), "dir/file.bin"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, err := os.ReadFile(filepath.Join(dir, "file.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("local file: %v, equal %v", err, bytes.Equal(got, data))
	}
	if !strings.Contains(stderr.String(), "100000 bytes") {
		t.Errorf("stderr: %s", stderr.String())
	}

	stdout.Reset()
	if code := mainCode(t.Context(), []string{"get", "-q", srv.Addr(), "dir/file.bin", "-"}, nil, &stdout, io.Discard); code != 0 || !bytes.Equal(stdout.Bytes(), data) {
		t.Fatalf("stdout download: exit %d, %d bytes", code, stdout.Len())
	}

	if code := mainCode(t.Context(), []string{"get", "-retries", "1", srv.Addr(), "missing", "m"}, nil, io.Discard, io.Discard); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "m")); !os.IsNotExist(err) {
		t.Errorf("partial file left behind: %v", err)
	}
	// Regression (found in review): a failed get truncated, then removed,
	// a file LOCAL already named.
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := mainCode(t.Context(), []string{"get", "-retries", "1", srv.Addr(), "missing", "keep"}, nil, io.Discard, io.Discard); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
		t.Errorf("existing LOCAL after a failed get: %q, %v; want it untouched", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // file.bin and keep: no temporary files left
		t.Errorf("directory holds %d entries after the gets, want 2", len(ents))
	}
	if fi, err := os.Stat(filepath.Join(dir, "file.bin")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("downloaded file mode %v, %v; want 0644", fi.Mode(), err)
	}
	if code := mainCode(t.Context(), []string{"get", srv.Addr()}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("missing REMOTE: exit %d, want 2", code)
	}
	// Command-line errors exit 2 (found in operator review: these exited 1).
	if code := mainCode(t.Context(), []string{"get", "127.0.0.1", "one", "x"}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("server without a port: exit %d, want 2", code)
	}
	if code := mainCode(t.Context(), []string{"-server", srv.Addr(), "-file", "a", "-verify-file", filepath.Join(dir, "nonexistent")}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("missing -verify-file: exit %d, want 2", code)
	}
}

// TestSummaryTextWithoutSuccess: with no successful transfer the text
// summary says so instead of printing 0s percentiles (found in operator
// review).
func TestSummaryTextWithoutSuccess(t *testing.T) {
	cfg := &config{server: "s", files: []string{"f"}, concurrency: 1}
	s := summarize(cfg, []record{{err: errors.New("timed out")}}, time.Second, 0, 0)
	var buf bytes.Buffer
	writeText(&buf, s)
	if out := buf.String(); !strings.Contains(out, "latency     n/a") || strings.Contains(out, "p50 0s") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestRunPut(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true})
	for _, mode := range []string{"octet", "netascii"} {
		t.Run(mode, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"-put", "-size", "100000", "-server", srv.Addr(), "-file", "up-" + mode + "-a,up-" + mode + "-b",
				"-c", "3", "-n", "5", "-blksize", "1024", "-windowsize", "8", "-mode", mode, "-json", "-progress=false"}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if code := mainCode(ctx, args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s %s", code, stderr.String(), stdout.String())
			}
			var s summary
			if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
				t.Fatalf("bad JSON %q: %v", stdout.String(), err)
			}
			want := generate(100_000)
			if mode == "netascii" {
				want = bytes.ReplaceAll(bytes.ReplaceAll(want, []byte("\r"), []byte("\r\x00")), []byte("\n"), []byte("\r\n"))
			}
			if !s.Put || s.OK != 5 || s.Failed != 0 || s.Bytes != 5*int64(len(want)) || s.Packets < 5*int64(len(want)/1024+1) {
				t.Errorf("summary: %s", stdout.String())
			}
			for _, f := range []string{"a", "b"} {
				if got, ok := srv.Upload("up-" + mode + "-" + f); !ok || !bytes.Equal(got, want) {
					t.Errorf("upload %s: %d bytes, want %d", f, len(got), len(want))
				}
			}
		})
	}
	t.Run("text", func(t *testing.T) {
		var stdout bytes.Buffer
		code := mainCode(t.Context(), []string{"-put", "-size", "0", "-server", srv.Addr(), "-file", "empty"}, nil, &stdout, io.Discard)
		if out := stdout.String(); code != 0 || !strings.Contains(out, "transfers   1 ok") || !strings.Contains(out, "0 B) sent, 1 DATA packets") {
			t.Errorf("code %d, output:\n%s", code, out)
		}
	})
	t.Run("refused", func(t *testing.T) {
		ro := tftpclienttest.NewServer(t, tftpclienttest.Config{})
		var stdout bytes.Buffer
		code := mainCode(t.Context(), []string{"-put", "-server", ro.Addr(), "-file", "x", "-json"}, nil, &stdout, io.Discard)
		if code != 1 || !strings.Contains(stdout.String(), "server error 2: Access violation") {
			t.Errorf("code %d, output:\n%s", code, stdout.String())
		}
	})
	for _, args := range [][]string{
		{"-put", "-file", "a", "-size", "-1"},
		{"-put", "-file", "a", "-sha256", strings.Repeat("ab", 32)},
		{"-put", "-file", "a", "-verify-file", "x"},
	} {
		if _, err := parseFlags(args, io.Discard, false); !errors.Is(err, errUsage) {
			t.Errorf("parseFlags(%q) = %v, want a usage error", args, err)
		}
	}
}
