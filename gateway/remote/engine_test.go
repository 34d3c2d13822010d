package remote

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// These tests run the gateway engine with a remote Handler and fetch files
// with the project's TFTP client, on loopback.

func TestEngineEndToEnd(t *testing.T) {
	data := pattern(1<<20 + 77)
	tests := []struct {
		name    string
		file    file
		opts    tftpclient.Options
		resumes int
	}{
		{"blksize 1468 windowsize 8 tsize", file{data: data, etag: "v1", chunks: []int{64 << 10}}, tftpclient.Options{BlockSize: 1468, WindowSize: 8, TSize: true}, 0},
		{"plain 512 lock-step", file{data: data[:100_000], etag: "v1"}, tftpclient.Options{}, 0},
		{"resumed after a break", file{data: data, etag: "v1", breakAt: 300_001}, tftpclient.Options{BlockSize: 1428, WindowSize: 4, TSize: true}, 1},
		{"no size: no tsize", file{data: data[:5000], noSize: true}, tftpclient.Options{TSize: true}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, "a", tt.file.serve)
			ts := gatewaytest.NewServer(t, dial(t, b.addr, Config{}))
			addr := ts.Addr().String()
			var out bytes.Buffer
			res, err := tftpclient.Get(ctxT(t, 30*time.Second), addr, "boot/file", &out, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), tt.file.data) {
				t.Fatalf("got %d bytes, want %d", out.Len(), len(tt.file.data))
			}
			wantTSize := int64(-1)
			if tt.opts.TSize && !tt.file.noSize {
				wantTSize = int64(len(tt.file.data))
			}
			if res.TSize != wantTSize {
				t.Errorf("tsize %d, want %d", res.TSize, wantTSize)
			}
			if s, ok := ts.WaitStats(5 * time.Second); !ok {
				t.Error("no session stats")
			} else if s.Backend == nil || s.Backend.Target != b.addr || s.Backend.HeaderLatency <= 0 || s.Backend.Resumes != tt.resumes {
				t.Errorf("session stats Backend = %+v, want %s with %d resumes", s.Backend, b.addr, tt.resumes)
			}
		})
	}
}

func TestEngineClientGetsErrorWithinBudget(t *testing.T) {
	slow := func(_ *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		<-s.Context().Done()
		return s.Context().Err()
	}
	for _, tt := range []struct {
		name   string
		target func(t *testing.T) string
	}{
		{"slow backend", func(t *testing.T) string { return startBackend(t, "slow", slow).addr }},
		{"no backend listening", freeAddr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const budget = 500 * time.Millisecond
			addr := gatewaytest.NewServer(t, dial(t, tt.target(t), Config{HeaderTimeout: budget})).Addr().String()
			start := time.Now()
			_, err := tftpclient.Get(ctxT(t, 10*time.Second), addr, "f", io.Discard, tftpclient.Options{TSize: true, BlockSize: 1468})
			took := time.Since(start)
			var te *tftpclient.Error
			if !errors.As(err, &te) || te.Code != 0 || te.Message != "backend timeout" {
				t.Fatalf("err = %v, want ERROR 0 backend timeout", err)
			}
			if took > budget+time.Second {
				t.Errorf("ERROR after %s, budget %s", took, budget)
			}
		})
	}
}

func TestEngineProbeCancelsBackendCall(t *testing.T) {
	data := pattern(1 << 20)
	b := startBackend(t, "a", func(req *tftpgwv1.ReadRequest, s grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		n := int64(len(data))
		s.Send(&tftpgwv1.ReadResponse{Msg: &tftpgwv1.ReadResponse_Header{Header: &tftpgwv1.Header{Size: &n, Etag: "e"}}})
		<-s.Context().Done() // a slow source: data would come later
		return s.Context().Err()
	})
	addr := gatewaytest.NewServer(t, dial(t, b.addr, Config{})).Addr().String()
	size, err := tftpclient.Probe(ctxT(t, 10*time.Second), addr, "big", tftpclient.Options{BlockSize: 1468})
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Probe = %d, %v", size, err)
	}
	select {
	case <-b.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("backend call not cancelled after the probe")
	}
}

func TestEngineErrorMapping(t *testing.T) {
	b := startBackend(t, "a", func(*tftpgwv1.ReadRequest, grpc.ServerStreamingServer[tftpgwv1.ReadResponse]) error {
		return errNotFoundStatus
	})
	addr := gatewaytest.NewServer(t, dial(t, b.addr, Config{})).Addr().String()
	_, err := tftpclient.Get(ctxT(t, 10*time.Second), addr, "missing", io.Discard, tftpclient.Options{})
	if !errors.Is(err, &tftpclient.Error{Code: 1, Message: "file not found"}) {
		t.Fatalf("err = %v", err)
	}
}

var errNotFoundStatus = status.Error(codes.NotFound, "no such file /srv/x")
