package wire

import (
	"bytes"
	"errors"
	"testing"
)

var parseErrorTests = []struct {
	name     string
	in       []byte
	wantCode uint16
	wantMsg  string
	wantErr  error
}{
	{"RFC1350_file_not_found", []byte("\x00\x05\x00\x01File not found\x00"), 1, "File not found", nil},
	{"RFC2347_code_8_EDK2_size_probe", []byte("\x00\x05\x00\x08User aborted the transfer\x00"), 8, "User aborted the transfer", nil},
	{"iPXE_abort", []byte("\x00\x05\x00\x00TFTP Aborted\x00"), 0, "TFTP Aborted", nil},
	{"code_big_endian", []byte("\x00\x05\x01\x02x\x00"), 0x0102, "x", nil},
	{"message_empty", []byte("\x00\x05\x00\x00\x00"), 0, "", nil},
	{"message_unterminated_taken_to_end", []byte("\x00\x05\x00\x00Early terminate"), 0, "Early terminate", nil},
	{"message_absent", []byte("\x00\x05\x00\x04"), 4, "", nil},
	{"message_stops_at_first_NUL", []byte("\x00\x05\x00\x00closed\x00junk\x00"), 0, "closed", nil},
	{"empty_short", nil, 0, "", ErrShort},
	{"three_bytes_short", []byte("\x00\x05\x00"), 0, "", ErrShort},
	{"opcode_ACK_not_ERROR", []byte("\x00\x04\x00\x01"), 0, "", ErrOpcode},
	{"opcode_unknown", []byte("\x00\x00\x00\x01x\x00"), 0, "", ErrOpcode},
}

func TestParseError(t *testing.T) {
	for _, tc := range parseErrorTests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, err := ParseError(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ParseError(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if code != tc.wantCode || msg != tc.wantMsg {
				t.Errorf("ParseError(%q) = %d, %q; want %d, %q", tc.in, code, msg, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestAppendError(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
		code   uint16
		msg    string
		want   []byte
	}{
		{"RFC1350_file_not_found", nil, 1, "file not found", []byte("\x00\x05\x00\x01file not found\x00")},
		{"RFC2347_code_8", nil, 8, "bad blksize", []byte("\x00\x05\x00\x08bad blksize\x00")},
		{"RFC1350_empty_message_still_terminated", nil, 0, "", []byte("\x00\x05\x00\x00\x00")},
		{"code_big_endian", nil, 0x0102, "x", []byte("\x00\x05\x01\x02x\x00")},
		{"message_cut_at_NUL", nil, 0, "a\x00b", []byte("\x00\x05\x00\x00a\x00")},
		{"appends_after_prefix", []byte("p"), 5, "unknown transfer ID", []byte("p\x00\x05\x00\x05unknown transfer ID\x00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendError(tc.prefix, tc.code, tc.msg); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendError = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseError(f *testing.F) {
	for _, tc := range parseErrorTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, msg, err := ParseError(b)
		if err != nil {
			if !isParseError(err) {
				t.Fatalf("ParseError(%q): unexpected error %v", b, err)
			}
			return
		}
		enc := AppendError(nil, code, msg)
		// The encoding is the input's header and message, terminated.
		if want := append(b[:HeaderSize+len(msg):HeaderSize+len(msg)], 0); !bytes.Equal(enc, want) {
			t.Fatalf("ParseError(%q) = %d, %q, which encodes to %q", b, code, msg, enc)
		}
		code2, msg2, err := ParseError(enc)
		if err != nil || code2 != code || msg2 != msg {
			t.Fatalf("round trip of %q: %d, %q, %v", b, code2, msg2, err)
		}
	})
}

func BenchmarkParseError(b *testing.B) {
	pkt := AppendError(nil, 8, "User aborted the transfer")
	b.ReportAllocs()
	for b.Loop() {
		_, _, sinkErr = ParseError(pkt)
	}
}

func BenchmarkAppendError(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendError(buf[:0], 1, "file not found")
	}
}
