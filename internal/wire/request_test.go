package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var parseRequestTests = []struct {
	name    string
	in      []byte
	want    Request
	wantErr error
}{
	{
		name: "RFC1350_RRQ",
		in:   []byte("\x00\x01pxelinux.0\x00octet\x00"),
		want: Request{Op: OpRRQ, Filename: "pxelinux.0", Mode: "octet"},
	},
	{
		name: "RFC1350_WRQ",
		in:   []byte("\x00\x02upload.bin\x00octet\x00"),
		want: Request{Op: OpWRQ, Filename: "upload.bin", Mode: "octet"},
	},
	{
		name: "RFC1350_mode_case_insensitive",
		in:   []byte("\x00\x01a\x00NetASCII\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "netascii"},
	},
	{
		name: "mode_value_not_validated",
		in:   []byte("\x00\x01a\x00Bogus\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "bogus"},
	},
	{
		name: "RFC2347_options_in_order_sent",
		in:   []byte("\x00\x01a\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}}},
	},
	{
		name: "RFC2347_option_names_case_insensitive",
		in:   []byte("\x00\x01a\x00OCTET\x00BlkSize\x001468\x00TSIZE\x000\x00X-Vendor\x00on\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}, {"x-vendor", "on"}}},
	},
	{
		name: "RFC2347_option_values_kept_as_sent",
		in:   []byte("\x00\x01a\x00octet\x00multicast\x00Host,1758,1\x00timeout\x00 05\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"multicast", "Host,1758,1"}, {"timeout", " 05"}}},
	},
	{
		name: "option_name_non_ASCII_bytes_kept",
		in:   []byte("\x00\x01a\x00octet\x00\xc3\x89Tag\x00v\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"\xc3\x89tag", "v"}}},
	},
	{
		name: "option_empty_value_kept",
		in:   []byte("\x00\x01a\x00octet\x00tsize\x00\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"tsize", ""}}},
	},
	{
		name: "option_repeated_name_first_wins",
		in:   []byte("\x00\x01a\x00octet\x00blksize\x001468\x00tsize\x000\x00BLKSIZE\x00512\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}}},
	},
	{
		name: "option_empty_name_skipped",
		in:   []byte("\x00\x01a\x00octet\x00\x001\x00blksize\x00512\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "512"}}},
	},
	{
		name: "trailing_name_without_value_ignored",
		in:   []byte("\x00\x01a\x00octet\x00blksize\x001468\x00tsize\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}}},
	},
	{
		name: "trailing_unterminated_value_ignored",
		in:   []byte("\x00\x01a\x00octet\x00blksize\x001468\x00tsize\x000"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}}},
	},
	{
		name: "trailing_unterminated_name_ignored",
		in:   []byte("\x00\x01a\x00octet\x00blksize\x001468\x00tsi"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}}},
	},
	{
		name: "trailing_NUL_padding_ignored",
		in:   []byte("\x00\x01a\x00octet\x00\x00\x00\x00"),
		want: Request{Op: OpRRQ, Filename: "a", Mode: "octet"},
	},
	{
		name: "filename_raw_BIOS_trailing_0xFF",
		in:   []byte("\x00\x01pxelinux.0\xff\xff\xff\x00octet\x00blksize\x001456\x00"),
		want: Request{Op: OpRRQ, Filename: "pxelinux.0\xff\xff\xff", Mode: "octet", Options: []Option{{"blksize", "1456"}}},
	},
	{
		name: "filename_raw_Windows_backslashes",
		in:   []byte("\x00\x01\\Boot\\BCD\x00octet\x00blksize\x001456\x00"),
		want: Request{Op: OpRRQ, Filename: `\Boot\BCD`, Mode: "octet", Options: []Option{{"blksize", "1456"}}},
	},
	{
		name: "firmware_EDK2",
		in:   []byte("\x00\x01bootx64.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00"),
		want: Request{Op: OpRRQ, Filename: "bootx64.efi", Mode: "octet", Options: []Option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}}},
	},
	{
		name: "firmware_iPXE",
		in:   []byte("\x00\x01undionly.kpxe\x00octet\x00blksize\x001432\x00tsize\x000\x00"),
		want: Request{Op: OpRRQ, Filename: "undionly.kpxe", Mode: "octet", Options: []Option{{"blksize", "1432"}, {"tsize", "0"}}},
	},
	{
		name: "firmware_U-Boot",
		in:   []byte("\x00\x01zImage\x00octet\x00timeout\x005\x00tsize\x000\x00blksize\x001468\x00"),
		want: Request{Op: OpRRQ, Filename: "zImage", Mode: "octet", Options: []Option{{"timeout", "5"}, {"tsize", "0"}, {"blksize", "1468"}}},
	},
	{
		name: "RFC2347_512_bytes_accepted",
		in:   []byte("\x00\x01" + strings.Repeat("f", 503) + "\x00octet\x00"),
		want: Request{Op: OpRRQ, Filename: strings.Repeat("f", 503), Mode: "octet"},
	},
	{name: "RFC2347_513_bytes_too_long", in: []byte("\x00\x01" + strings.Repeat("f", 504) + "\x00octet\x00"), wantErr: ErrTooLong},
	{name: "empty_short", in: nil, wantErr: ErrShort},
	{name: "one_byte_short", in: []byte("\x00"), wantErr: ErrShort},
	{name: "opcode_DATA_not_request", in: []byte("\x00\x03a\x00octet\x00"), wantErr: ErrOpcode},
	{name: "opcode_OACK_not_request", in: []byte("\x00\x06blksize\x00512\x00"), wantErr: ErrOpcode},
	{name: "opcode_unknown", in: []byte("\x00\x09a\x00octet\x00"), wantErr: ErrOpcode},
	{name: "opcode_only", in: []byte("\x00\x01"), wantErr: ErrUnterminated},
	{name: "filename_unterminated", in: []byte("\x00\x01pxelinux.0"), wantErr: ErrUnterminated},
	{name: "filename_empty", in: []byte("\x00\x01\x00octet\x00"), wantErr: ErrEmptyFilename},
	{name: "mode_missing", in: []byte("\x00\x01a\x00"), wantErr: ErrUnterminated},
	{name: "mode_unterminated", in: []byte("\x00\x01a\x00octet"), wantErr: ErrUnterminated},
	{name: "mode_empty", in: []byte("\x00\x01a\x00\x00blksize\x00512\x00"), wantErr: ErrEmptyMode},
}

func TestParseRequest(t *testing.T) {
	for _, tc := range parseRequestTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParseRequest(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				if !reflect.DeepEqual(got, Request{}) {
					t.Errorf("ParseRequest(%q) = %+v with error, want zero Request", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest(%q) error = %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRequest(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseRequestCopies checks that the Request does not alias the
// packet buffer, which the listener reuses for the next packet.
func TestParseRequestCopies(t *testing.T) {
	b := []byte("\x00\x01file\x00octet\x00blksize\x001468\x00")
	req, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < len(b); i++ {
		b[i] = 'X'
	}
	want := Request{Op: OpRRQ, Filename: "file", Mode: "octet", Options: []Option{{"blksize", "1468"}}}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("after overwriting the packet: %+v, want %+v", req, want)
	}
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name     string
		prefix   []byte
		op       Opcode
		filename string
		mode     string
		opts     []Option
		want     []byte
	}{
		{
			name: "RFC1350_RRQ_no_options",
			op:   OpRRQ, filename: "pxelinux.0", mode: "octet",
			want: []byte("\x00\x01pxelinux.0\x00octet\x00"),
		},
		{
			name: "RFC1350_WRQ_netascii",
			op:   OpWRQ, filename: "log.txt", mode: "netascii",
			want: []byte("\x00\x02log.txt\x00netascii\x00"),
		},
		{
			name: "RFC2347_options_in_order",
			op:   OpRRQ, filename: "bootx64.efi", mode: "octet",
			opts: []Option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}},
			want: []byte("\x00\x01bootx64.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00"),
		},
		{
			name: "RFC2347_empty_value",
			op:   OpRRQ, filename: "a", mode: "octet",
			opts: []Option{{"tsize", ""}},
			want: []byte("\x00\x01a\x00octet\x00tsize\x00\x00"),
		},
		{
			name:   "appends_after_prefix",
			prefix: []byte("hdr"),
			op:     OpRRQ, filename: "a", mode: "octet",
			want: []byte("hdr\x00\x01a\x00octet\x00"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendRequest(tc.prefix, tc.op, tc.filename, tc.mode, tc.opts)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("AppendRequest = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, tc := range parseRequestTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err != nil {
			if !isParseError(err) {
				t.Fatalf("ParseRequest(%q): unexpected error %v", b, err)
			}
			return
		}
		if req.Op != OpRRQ && req.Op != OpWRQ {
			t.Fatalf("ParseRequest(%q): Op = %v", b, req.Op)
		}
		checkField(t, "filename", req.Filename, false)
		checkField(t, "mode", req.Mode, true)
		for i, o := range req.Options {
			checkField(t, "option name", o.Name, true)
			if strings.IndexByte(o.Value, 0) >= 0 {
				t.Fatalf("option value %q holds a NUL", o.Value)
			}
			for _, p := range req.Options[:i] {
				if p.Name == o.Name {
					t.Fatalf("option %q repeated", o.Name)
				}
			}
		}
		// Round trip: the re-encoded request is no longer than the input
		// (ignored bytes are dropped) and parses to the same Request.
		enc := AppendRequest(nil, req.Op, req.Filename, req.Mode, req.Options)
		if len(enc) > len(b) {
			t.Fatalf("re-encoded %q to a longer %q", b, enc)
		}
		req2, err := ParseRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded %q to %q, which fails: %v", b, enc, err)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", b, req2, req)
		}
	})
}

// checkField checks a parsed string is non-empty, holds no NUL and, if
// lower, no upper-case ASCII letter.
func checkField(t *testing.T, what, s string, lower bool) {
	t.Helper()
	if s == "" || strings.IndexByte(s, 0) >= 0 {
		t.Fatalf("%s %q is empty or holds a NUL", what, s)
	}
	if lower && strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t.Fatalf("%s %q is not lower-cased", what, s)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	pkt := []byte("\x00\x01bootx64.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00")
	b.ReportAllocs()
	for b.Loop() {
		_, sinkErr = ParseRequest(pkt)
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, MaxRequestSize)
	opts := []Option{{"tsize", "0"}, {"blksize", "1468"}, {"windowsize", "4"}}
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendRequest(buf[:0], OpRRQ, "bootx64.efi", "octet", opts)
	}
}
