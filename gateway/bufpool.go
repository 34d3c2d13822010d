package gateway

import (
	"math/bits"
	"sync"
)

// Session buffers come from power-of-two size classes, so a session holds
// at most twice what its window needs and buffers are reused across
// sessions. Pools hold *[]byte: putting a bare slice allocates.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 23 // 8 MiB, above 64 windows of 65464-byte blocks
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n (its contents are not zeroed).
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

func putBuf(p *[]byte) {
	c := bufClass(cap(*p))
	if c >= len(bufPools) || cap(*p) != 1<<(c+minBufShift) {
		return
	}
	bufPools[c].Put(p)
}
