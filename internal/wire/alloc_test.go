package wire

import (
	"fmt"
	"testing"
)

// optionsPacket returns a request (op RRQ) or an OACK (op OACK) with n
// options whose names no parser knows, in mixed case ("X-Vendor-0"...).
func optionsPacket(op Opcode, n int) []byte {
	opts := make([]Option, n)
	for i := range opts {
		opts[i] = Option{Name: fmt.Sprintf("X-Vendor-%d", i), Value: fmt.Sprint(100 + i)}
	}
	if op == OpOACK {
		return AppendOACK(nil, opts)
	}
	return AppendRequest(nil, op, "Boot/BOOTX64.EFI", "OcTeT", opts)
}

// TestParseAllocs proves that ParseRequest and ParseOACK allocate a fixed
// number of times per packet whatever the number and names of its
// options: one string for all the packet's text, and the options slice.
func TestParseAllocs(t *testing.T) {
	for _, n := range []int{0, 1, 8, 30} {
		req := optionsPacket(OpRRQ, n)
		if len(req) > MaxRequestSize {
			t.Fatalf("%d options: %d-byte request", n, len(req))
		}
		oack := optionsPacket(OpOACK, n)
		want := 2 // the text and the options slice
		if n == 0 {
			want = 1
		}
		t.Run(fmt.Sprintf("ParseRequest_%d_options", n), func(t *testing.T) {
			got := testing.AllocsPerRun(100, func() { _, sinkErr = ParseRequest(req) })
			if got != float64(want) {
				t.Errorf("%v allocations per request, want %d", got, want)
			}
		})
		if n == 0 {
			want = 0 // nil options: nothing to copy
		}
		t.Run(fmt.Sprintf("ParseOACK_%d_options", n), func(t *testing.T) {
			got := testing.AllocsPerRun(100, func() { _, sinkErr = ParseOACK(oack) })
			if got != float64(want) {
				t.Errorf("%v allocations per OACK, want %d", got, want)
			}
		})
	}
}

func BenchmarkParseRequestUnknownOptions(b *testing.B) {
	pkt := optionsPacket(OpRRQ, 8)
	b.ReportAllocs()
	for b.Loop() {
		_, sinkErr = ParseRequest(pkt)
	}
}
