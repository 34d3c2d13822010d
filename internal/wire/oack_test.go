package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

var parseOACKTests = []struct {
	name    string
	in      []byte
	want    []Option
	wantErr error
}{
	{
		name: "RFC2347_options_in_order_sent",
		in:   []byte("\x00\x06tsize\x001048576\x00blksize\x001468\x00"),
		want: []Option{{"tsize", "1048576"}, {"blksize", "1468"}},
	},
	{
		name: "RFC2347_option_names_case_insensitive",
		in:   []byte("\x00\x06BLKSIZE\x001432\x00TSize\x0042\x00"),
		want: []Option{{"blksize", "1432"}, {"tsize", "42"}},
	},
	{
		name: "RFC2349_timeout_value_kept_as_sent",
		in:   []byte("\x00\x06timeout\x0005\x00"),
		want: []Option{{"timeout", "05"}},
	},
	{
		name: "RFC7440_windowsize",
		in:   []byte("\x00\x06blksize\x001468\x00windowsize\x004\x00"),
		want: []Option{{"blksize", "1468"}, {"windowsize", "4"}},
	},
	{
		name: "empty_value_returned",
		in:   []byte("\x00\x06tsize\x00\x00"),
		want: []Option{{"tsize", ""}},
	},
	{
		name: "empty_name_and_duplicates_returned_as_sent",
		in:   []byte("\x00\x06\x00x\x00blksize\x00512\x00BLKSIZE\x001024\x00"),
		want: []Option{{"", "x"}, {"blksize", "512"}, {"blksize", "1024"}},
	},
	{
		name: "no_options",
		in:   []byte("\x00\x06"),
		want: nil,
	},
	{name: "empty_short", in: nil, wantErr: ErrShort},
	{name: "one_byte_short", in: []byte("\x00"), wantErr: ErrShort},
	{name: "opcode_RRQ_not_OACK", in: []byte("\x00\x01a\x00octet\x00"), wantErr: ErrOpcode},
	{name: "opcode_unknown", in: []byte("\x00\x07blksize\x00512\x00"), wantErr: ErrOpcode},
	{name: "name_unterminated", in: []byte("\x00\x06blksize"), wantErr: ErrUnterminated},
	{name: "name_without_value", in: []byte("\x00\x06blksize\x00"), wantErr: ErrUnterminated},
	{name: "value_unterminated", in: []byte("\x00\x06blksize\x00512"), wantErr: ErrUnterminated},
	{name: "trailing_incomplete_pair", in: []byte("\x00\x06blksize\x00512\x00tsize\x00"), wantErr: ErrUnterminated},
	{name: "trailing_NUL", in: []byte("\x00\x06blksize\x00512\x00\x00"), wantErr: ErrUnterminated},
}

func TestParseOACK(t *testing.T) {
	for _, tc := range parseOACKTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOACK(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ParseOACK(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseOACK(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseOACKCopies checks that the options do not alias the packet
// buffer, which the client reuses for the next packet.
func TestParseOACKCopies(t *testing.T) {
	b := []byte("\x00\x06BlkSize\x001468\x00x-Vendor\x00On\x00")
	opts, err := ParseOACK(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < len(b); i++ {
		b[i] = 'X'
	}
	if want := []Option{{"blksize", "1468"}, {"x-vendor", "On"}}; !reflect.DeepEqual(opts, want) {
		t.Errorf("after overwriting the packet: %q, want %q", opts, want)
	}
}

func TestAppendOACK(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
		opts   []Option
		want   []byte
	}{
		{"RFC2347_options_in_order", nil, []Option{{"tsize", "1048576"}, {"blksize", "1468"}}, []byte("\x00\x06tsize\x001048576\x00blksize\x001468\x00")},
		{"RFC7440_windowsize", nil, []Option{{"windowsize", "4"}}, []byte("\x00\x06windowsize\x004\x00")},
		{"no_options", nil, nil, []byte("\x00\x06")},
		{"appends_after_prefix", []byte("p"), []Option{{"blksize", "512"}}, []byte("p\x00\x06blksize\x00512\x00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendOACK(tc.prefix, tc.opts); !bytes.Equal(got, tc.want) {
				t.Errorf("AppendOACK = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseOACK(f *testing.F) {
	for _, tc := range parseOACKTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := ParseOACK(b)
		if err != nil {
			if opts != nil || !isParseError(err) {
				t.Fatalf("ParseOACK(%q) = %q, %v", b, opts, err)
			}
			return
		}
		// Round trip: the encoding has the input's length (only the case
		// of names may differ) and parses to the same options.
		enc := AppendOACK(nil, opts)
		if len(enc) != len(b) {
			t.Fatalf("ParseOACK(%q) = %q, which encodes to %q", b, opts, enc)
		}
		opts2, err := ParseOACK(enc)
		if err != nil || !reflect.DeepEqual(opts2, opts) {
			t.Fatalf("round trip of %q: %q, %v; want %q", b, opts2, err, opts)
		}
	})
}

func BenchmarkParseOACK(b *testing.B) {
	pkt := []byte("\x00\x06tsize\x001048576\x00blksize\x001468\x00windowsize\x004\x00")
	b.ReportAllocs()
	for b.Loop() {
		_, sinkErr = ParseOACK(pkt)
	}
}

func BenchmarkAppendOACK(b *testing.B) {
	buf := make([]byte, 0, 64)
	opts := []Option{{"tsize", "1048576"}, {"blksize", "1468"}, {"windowsize", "4"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendOACK(buf[:0], opts)
	}
}
