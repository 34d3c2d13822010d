package wire

import (
	"bytes"
	"errors"
	"testing"
)

// Sinks keep the compiler from optimising away the calls under test.
var (
	sinkBytes []byte
	sinkErr   error
	sinkOp    Opcode
	sinkBlock uint16
)

var packetOpcodeTests = []struct {
	name    string
	in      []byte
	want    Opcode
	wantErr error
}{
	{"RFC1350_RRQ", []byte("\x00\x01f\x00octet\x00"), OpRRQ, nil},
	{"RFC1350_WRQ", []byte("\x00\x02f\x00octet\x00"), OpWRQ, nil},
	{"RFC1350_DATA", []byte("\x00\x03\x00\x01"), OpDATA, nil},
	{"RFC1350_ACK", []byte("\x00\x04\x00\x01"), OpACK, nil},
	{"RFC1350_ERROR", []byte("\x00\x05\x00\x00\x00"), OpERROR, nil},
	{"RFC2347_OACK", []byte("\x00\x06"), OpOACK, nil},
	{"two_bytes_are_enough", []byte("\x00\x04"), OpACK, nil},
	{"empty_is_short", nil, 0, ErrShort},
	{"one_byte_is_short", []byte("\x00"), 0, ErrShort},
	{"opcode_0_unknown", []byte("\x00\x00\x00\x01"), 0, ErrOpcode},
	{"opcode_7_unknown", []byte("\x00\x07\x00\x01"), 0, ErrOpcode},
	{"big_endian_not_little_endian", []byte("\x01\x00\x00\x01"), 0, ErrOpcode},
	{"opcode_0xffff_unknown", []byte("\xff\xff"), 0, ErrOpcode},
}

func TestPacketOpcode(t *testing.T) {
	for _, tc := range packetOpcodeTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PacketOpcode(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("PacketOpcode(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("PacketOpcode(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestOpcodeString(t *testing.T) {
	tests := []struct {
		op   Opcode
		want string
	}{
		{OpRRQ, "RRQ"},
		{OpWRQ, "WRQ"},
		{OpDATA, "DATA"},
		{OpACK, "ACK"},
		{OpERROR, "ERROR"},
		{OpOACK, "OACK"},
		{0, "Opcode(0)"},
		{7, "Opcode(7)"},
		{65535, "Opcode(65535)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.op.String(); got != tc.want {
				t.Errorf("Opcode(%d).String() = %q, want %q", uint16(tc.op), got, tc.want)
			}
		})
	}
}

// TestHotPathAllocs proves the per-packet functions allocate nothing: the
// DATA and ACK codecs, PacketOpcode, and every encoder writing into a
// buffer with enough capacity. Error paths count too, since junk arrives
// at line rate.
func TestHotPathAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	payload := bytes.Repeat([]byte{'x'}, 512)
	data := AppendData(nil, 7, payload)
	ack := AppendAck(nil, 7)
	opts := []Option{{"tsize", "1048576"}, {"blksize", "1468"}, {"windowsize", "4"}}
	tests := []struct {
		name string
		fn   func()
	}{
		{"PacketOpcode", func() { sinkOp, sinkErr = PacketOpcode(data) }},
		{"PacketOpcode_short", func() { sinkOp, sinkErr = PacketOpcode(data[:1]) }},
		{"PacketOpcode_unknown", func() { sinkOp, sinkErr = PacketOpcode([]byte{0, 9}) }},
		{"ParseData", func() { sinkBlock, sinkBytes, sinkErr = ParseData(data) }},
		{"ParseData_short", func() { sinkBlock, sinkBytes, sinkErr = ParseData(data[:3]) }},
		{"ParseData_wrong_opcode", func() { sinkBlock, sinkBytes, sinkErr = ParseData(ack) }},
		{"ParseAck", func() { sinkBlock, sinkErr = ParseAck(ack) }},
		{"ParseAck_short", func() { sinkBlock, sinkErr = ParseAck(ack[:3]) }},
		{"ParseAck_wrong_opcode", func() { sinkBlock, sinkErr = ParseAck(data) }},
		{"ParseRequest_error", func() { _, sinkErr = ParseRequest(data) }},
		{"ParseError_error", func() { _, _, sinkErr = ParseError(data) }},
		{"ParseOACK_error", func() { _, sinkErr = ParseOACK(data) }},
		{"AppendData", func() { sinkBytes = AppendData(buf[:0], 7, payload) }},
		{"AppendDataHeader", func() { sinkBytes = AppendDataHeader(buf[:0], 7) }},
		{"AppendAck", func() { sinkBytes = AppendAck(buf[:0], 7) }},
		{"AppendError", func() { sinkBytes = AppendError(buf[:0], 1, "file not found") }},
		{"AppendOACK", func() { sinkBytes = AppendOACK(buf[:0], opts) }},
		{"AppendRequest", func() { sinkBytes = AppendRequest(buf[:0], OpRRQ, "pxelinux.0", "octet", opts) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
				t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
			}
		})
	}
}

// isParseError reports whether err is one of the sentinels a parser may
// return.
func isParseError(err error) bool {
	for _, s := range []error{ErrShort, ErrOpcode, ErrTooLong, ErrUnterminated, ErrEmptyFilename, ErrEmptyMode} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzPacketOpcode(f *testing.F) {
	for _, tc := range packetOpcodeTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := PacketOpcode(b)
		if err != nil {
			if op != 0 || !(errors.Is(err, ErrShort) || errors.Is(err, ErrOpcode)) {
				t.Fatalf("PacketOpcode(%q) = %v, %v", b, op, err)
			}
			return
		}
		if op < OpRRQ || op > OpOACK || b[0] != 0 || b[1] != byte(op) {
			t.Fatalf("PacketOpcode(%q) = %v", b, op)
		}
	})
}

func BenchmarkPacketOpcode(b *testing.B) {
	pkt := AppendAck(nil, 1)
	b.ReportAllocs()
	for b.Loop() {
		sinkOp, sinkErr = PacketOpcode(pkt)
	}
}
