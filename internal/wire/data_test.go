package wire

import (
	"bytes"
	"errors"
	"testing"
)

var parseDataTests = []struct {
	name        string
	in          []byte
	wantBlock   uint16
	wantPayload []byte
	wantErr     error
}{
	{"RFC1350_block_and_payload", []byte("\x00\x03\x00\x01hello"), 1, []byte("hello"), nil},
	{"RFC1350_empty_final_block", []byte("\x00\x03\x00\x02"), 2, []byte{}, nil},
	{"block_number_big_endian", []byte("\x00\x03\x01\x02x"), 0x0102, []byte("x"), nil},
	{"block_65535", []byte("\x00\x03\xff\xffz"), 65535, []byte("z"), nil},
	{"block_0_after_rollover", []byte("\x00\x03\x00\x00z"), 0, []byte("z"), nil},
	{"payload_NUL_and_0xFF_bytes", []byte("\x00\x03\x00\x01\x00\xff\x00"), 1, []byte("\x00\xff\x00"), nil},
	{"empty_short", nil, 0, nil, ErrShort},
	{"opcode_only_short", []byte("\x00\x03"), 0, nil, ErrShort},
	{"three_bytes_short", []byte("\x00\x03\x00"), 0, nil, ErrShort},
	{"opcode_ACK_not_DATA", []byte("\x00\x04\x00\x01"), 0, nil, ErrOpcode},
	{"opcode_unknown", []byte("\x00\x08\x00\x01data"), 0, nil, ErrOpcode},
}

func TestParseData(t *testing.T) {
	for _, tc := range parseDataTests {
		t.Run(tc.name, func(t *testing.T) {
			block, payload, err := ParseData(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || block != 0 || payload != nil {
					t.Fatalf("ParseData(%q) = %d, %q, %v; want 0, nil, %v", tc.in, block, payload, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseData(%q) error = %v", tc.in, err)
			}
			if block != tc.wantBlock || !bytes.Equal(payload, tc.wantPayload) {
				t.Errorf("ParseData(%q) = %d, %q; want %d, %q", tc.in, block, payload, tc.wantBlock, tc.wantPayload)
			}
		})
	}
}

func TestParseDataPayloadIsView(t *testing.T) {
	b := []byte("\x00\x03\x00\x01abc")
	_, payload, err := ParseData(b)
	if err != nil {
		t.Fatal(err)
	}
	if &payload[0] != &b[HeaderSize] {
		t.Error("payload is a copy, want a view into the packet")
	}
}

func TestAppendData(t *testing.T) {
	tests := []struct {
		name    string
		prefix  []byte
		block   uint16
		payload []byte
		want    []byte
	}{
		{"RFC1350_block_1", nil, 1, []byte("hello"), []byte("\x00\x03\x00\x01hello")},
		{"RFC1350_empty_final_block", nil, 9, nil, []byte("\x00\x03\x00\x09")},
		{"block_number_big_endian", nil, 0x0102, []byte("x"), []byte("\x00\x03\x01\x02x")},
		{"block_65535", nil, 65535, []byte{0}, []byte("\x00\x03\xff\xff\x00")},
		{"appends_after_prefix", []byte("p"), 1, []byte("x"), []byte("p\x00\x03\x00\x01x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendData(tc.prefix, tc.block, tc.payload); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendData = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppendDataHeader(t *testing.T) {
	tests := []struct {
		name  string
		block uint16
		want  []byte
	}{
		{"RFC1350_block_1", 1, []byte("\x00\x03\x00\x01")},
		{"block_0", 0, []byte("\x00\x03\x00\x00")},
		{"block_0xABCD", 0xabcd, []byte("\x00\x03\xab\xcd")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendDataHeader(nil, tc.block)
			if !bytes.Equal(got, tc.want) || len(got) != HeaderSize {
				t.Errorf("AppendDataHeader = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseData(f *testing.F) {
	for _, tc := range parseDataTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		block, payload, err := ParseData(b)
		if err != nil {
			if !isParseError(err) {
				t.Fatalf("ParseData(%q): unexpected error %v", b, err)
			}
		} else if enc := AppendData(nil, block, payload); !bytes.Equal(enc, b) {
			// Every valid DATA packet re-encodes to itself.
			t.Fatalf("ParseData(%q) = %d, %q, which encodes to %q", b, block, payload, enc)
		}
		// And the other way: any payload and block survive encoding.
		n := uint16(len(b))
		block, payload, err = ParseData(AppendData(nil, n, b))
		if err != nil || block != n || !bytes.Equal(payload, b) {
			t.Fatalf("AppendData(%d, %q) parses to %d, %q, %v", n, b, block, payload, err)
		}
	})
}

func BenchmarkParseData(b *testing.B) {
	pkt := AppendData(nil, 1, make([]byte, 1468))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		sinkBlock, sinkBytes, sinkErr = ParseData(pkt)
	}
}

func BenchmarkAppendData(b *testing.B) {
	payload := make([]byte, 1468)
	buf := make([]byte, 0, HeaderSize+len(payload))
	b.ReportAllocs()
	b.SetBytes(int64(cap(buf)))
	for b.Loop() {
		sinkBytes = AppendData(buf[:0], 1, payload)
	}
}

func BenchmarkAppendDataHeader(b *testing.B) {
	buf := make([]byte, 0, HeaderSize)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendDataHeader(buf[:0], 1)
	}
}
