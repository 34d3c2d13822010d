package remote

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkContentRead measures the edge's side of a backend stream: the
// content read block by block (1468 bytes, as a session reads it) from a
// backend on loopback sending 64 KiB chunks, with and without a digest in
// the header. The difference is what checking the digest costs per byte
// (BENCHMARKS.md); without one the hash is never run.
func BenchmarkContentRead(b *testing.B) {
	data := pattern(64 << 20)
	sum := sha256.Sum256(data)
	for _, tc := range []struct {
		name   string
		digest []byte
	}{{"no_digest", nil}, {"sha256", sum[:]}} {
		b.Run(tc.name, func(b *testing.B) {
			be := startBackend(b, "a", (&file{data: data, etag: "v1", digest: tc.digest, chunks: []int{64 << 10}}).serve)
			h := dial(b, be.addr, Config{})
			buf := make([]byte, 1468)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := h.ServeTFTP(ctx, request("s", "f"))
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := c.Read(buf)
					if err != nil {
						break
					}
				}
				c.Close()
				cancel()
			}
		})
	}
}
