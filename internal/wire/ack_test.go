package wire

import (
	"bytes"
	"errors"
	"testing"
)

var parseAckTests = []struct {
	name      string
	in        []byte
	wantBlock uint16
	wantErr   error
}{
	{"RFC1350_block_1", []byte("\x00\x04\x00\x01"), 1, nil},
	{"RFC2347_block_0_acknowledges_OACK", []byte("\x00\x04\x00\x00"), 0, nil},
	{"block_number_big_endian", []byte("\x00\x04\x01\x02"), 0x0102, nil},
	{"block_65535", []byte("\x00\x04\xff\xff"), 65535, nil},
	{"trailing_bytes_ignored", []byte("\x00\x04\x00\x07\x00\x00\x00\x00padding"), 7, nil},
	{"empty_short", nil, 0, ErrShort},
	{"opcode_only_short", []byte("\x00\x04"), 0, ErrShort},
	{"three_bytes_short", []byte("\x00\x04\x00"), 0, ErrShort},
	{"opcode_DATA_not_ACK", []byte("\x00\x03\x00\x01"), 0, ErrOpcode},
	{"opcode_ERROR_not_ACK", []byte("\x00\x05\x00\x00\x00"), 0, ErrOpcode},
	{"opcode_unknown", []byte("\x04\x00\x00\x01"), 0, ErrOpcode},
}

func TestParseAck(t *testing.T) {
	for _, tc := range parseAckTests {
		t.Run(tc.name, func(t *testing.T) {
			block, err := ParseAck(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ParseAck(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if block != tc.wantBlock {
				t.Errorf("ParseAck(%q) = %d, want %d", tc.in, block, tc.wantBlock)
			}
		})
	}
}

func TestAppendAck(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
		block  uint16
		want   []byte
	}{
		{"RFC1350_block_1", nil, 1, []byte("\x00\x04\x00\x01")},
		{"RFC2347_block_0", nil, 0, []byte("\x00\x04\x00\x00")},
		{"block_number_big_endian", nil, 0x0102, []byte("\x00\x04\x01\x02")},
		{"block_65535", nil, 65535, []byte("\x00\x04\xff\xff")},
		{"appends_after_prefix", []byte("p"), 2, []byte("p\x00\x04\x00\x02")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendAck(tc.prefix, tc.block); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendAck = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseAck(f *testing.F) {
	for _, tc := range parseAckTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		block, err := ParseAck(b)
		if err != nil {
			if block != 0 || !isParseError(err) {
				t.Fatalf("ParseAck(%q) = %d, %v", b, block, err)
			}
			return
		}
		if enc := AppendAck(nil, block); !bytes.Equal(enc, b[:HeaderSize]) {
			t.Fatalf("ParseAck(%q) = %d, which encodes to %q", b, block, enc)
		}
	})
}

func BenchmarkParseAck(b *testing.B) {
	pkt := AppendAck(nil, 1)
	b.ReportAllocs()
	for b.Loop() {
		sinkBlock, sinkErr = ParseAck(pkt)
	}
}

func BenchmarkAppendAck(b *testing.B) {
	buf := make([]byte, 0, HeaderSize)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendAck(buf[:0], 1)
	}
}
