package backend

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// trickleContent returns 1000 bytes, then blocks (a slow upstream whose
// next bytes have not arrived yet) until it is closed.
type trickleContent struct {
	sent   atomic.Bool
	closed chan struct{}
	once   atomic.Bool
}

func (c *trickleContent) Size() int64 { return -1 }
func (c *trickleContent) Read(p []byte) (int, error) {
	if c.sent.CompareAndSwap(false, true) {
		n := min(len(p), 1000)
		for i := range p[:n] {
			p[i] = 'x'
		}
		return n, nil
	}
	<-c.closed
	return 0, os.ErrClosed
}
func (c *trickleContent) Close() error {
	if c.once.CompareAndSwap(false, true) {
		close(c.closed)
	}
	return nil
}

// Bytes the content has already produced must reach the edge without
// waiting for a full 64 KiB chunk: the edge needs only one TFTP block to
// answer the client, and it treats a stream silent for its idle timeout
// (10 s by default) as broken. fill() keeps reading until the chunk
// buffer is full, so a slow source (an HTTP upstream at a few KB/s) sends
// nothing for a long time while data is available.
func TestAvailableDataIsNotHeldBack(t *testing.T) {
	c := &trickleContent{closed: make(chan struct{})}
	h := gateway.HandlerFunc(func(context.Context, *gateway.Request) (gateway.Content, error) { return c, nil })
	conn := dial(t, h, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(ctx, &tftpgwv1.ReadRequest{Path: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := stream.Recv(); err != nil || msg.GetHeader() == nil {
		t.Fatalf("header: %v, %v", msg, err)
	}
	start := time.Now()
	msg, err := stream.Recv()
	if err != nil {
		t.Fatalf("no data chunk %v after the header although 1000 bytes were read from the content: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if n := len(msg.GetData()); n != 1000 {
		t.Errorf("first chunk has %d bytes, want the 1000 available", n)
	}
}
