package netascii

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var readerTests = []struct {
	name string
	in   string
	want string
}{
	{"empty", "", ""},
	{"plain_bytes_unchanged", "hello, world", "hello, world"},
	{"RFC764_LF_to_CR_LF", "a\nb", "a\r\nb"},
	{"RFC764_CR_to_CR_NUL", "a\rb", "a\r\x00b"},
	{"RFC764_CR_LF_both_expanded", "a\r\nb", "a\r\x00\r\nb"},
	{"LF_LF", "\n\n", "\r\n\r\n"},
	{"CR_CR", "\r\r", "\r\x00\r\x00"},
	{"LF_CR", "\n\r", "\r\n\r\x00"},
	{"leading_LF", "\nx", "\r\nx"},
	{"trailing_LF", "x\n", "x\r\n"},
	{"trailing_CR", "x\r", "x\r\x00"},
	{"NUL_unchanged", "a\x00b", "a\x00b"},
	{"high_bytes_unchanged", "\xff\xfe\x80", "\xff\xfe\x80"},
	{"config_file", "DEFAULT menu\nLABEL linux\n  KERNEL vmlinuz\n", "DEFAULT menu\r\nLABEL linux\r\n  KERNEL vmlinuz\r\n"},
	{
		"LF_at_internal_buffer_boundary",
		strings.Repeat("x", bufSize-1) + "\n" + "y",
		strings.Repeat("x", bufSize-1) + "\r\n" + "y",
	},
	{
		"CR_at_internal_buffer_boundary",
		strings.Repeat("x", bufSize-1) + "\r" + "\r",
		strings.Repeat("x", bufSize-1) + "\r\x00\r\x00",
	},
	{"many_buffers_of_newlines", strings.Repeat("\n", 3*bufSize+7), strings.Repeat("\r\n", 3*bufSize+7)},
}

// readAllWith reads r to EOF with a destination buffer of size n.
func readAllWith(r io.Reader, n int) ([]byte, error) {
	var out []byte
	p := make([]byte, n)
	for {
		m, err := r.Read(p)
		out = append(out, p[:m]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestReader checks the exact output for every source reader shape and
// destination size, so that CR and LF expansions split across Read calls
// are covered.
func TestReader(t *testing.T) {
	sources := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one_byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data_with_EOF", iotest.DataErrReader},
	}
	for _, tc := range readerTests {
		for _, src := range sources {
			for _, size := range []int{1, 2, 3, 7, bufSize, 4 * bufSize} {
				t.Run(fmt.Sprintf("%s/%s/dst_%d", tc.name, src.name, size), func(t *testing.T) {
					got, err := readAllWith(NewReader(src.wrap(strings.NewReader(tc.in))), size)
					if err != nil {
						t.Fatal(err)
					}
					if string(got) != tc.want {
						t.Errorf("converted %q to %q, want %q", tc.in, got, tc.want)
					}
				})
			}
		}
	}
}

// TestReaderOneByteAtATime reads a one-byte source into a one-byte
// destination: every expansion is split across two Reads.
func TestReaderOneByteAtATime(t *testing.T) {
	r := NewReader(iotest.OneByteReader(strings.NewReader("a\r\nb\n\r")))
	want := []byte("a\r\x00\r\nb\r\n\r\x00")
	var got []byte
	var p [1]byte
	for {
		n, err := r.Read(p[:])
		if n > 1 {
			t.Fatalf("Read of 1 byte returned %d", n)
		}
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestReaderIOTest runs the standard library's io.Reader conformance
// checks.
func TestReaderIOTest(t *testing.T) {
	for _, tc := range readerTests {
		t.Run(tc.name, func(t *testing.T) {
			if err := iotest.TestReader(NewReader(strings.NewReader(tc.in)), []byte(tc.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestReaderZeroLengthRead(t *testing.T) {
	r := NewReader(strings.NewReader("\n"))
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if got, _ := io.ReadAll(r); string(got) != "\r\n" {
		t.Errorf("after Read(nil): %q, want %q", got, "\r\n")
	}
}

// TestReaderError checks that a source error is returned after every
// byte read before it, including the carried half of an expansion, and
// again on later calls.
func TestReaderError(t *testing.T) {
	errSource := errors.New("source failed")
	r := NewReader(io.MultiReader(strings.NewReader("ab\n"), iotest.ErrReader(errSource)))
	got, err := readAllWith(r, 3)
	if !errors.Is(err, errSource) {
		t.Fatalf("error = %v, want %v", err, errSource)
	}
	if string(got) != "ab\r\n" {
		t.Errorf("got %q before the error, want %q", got, "ab\r\n")
	}
	if n, err := r.Read(make([]byte, 8)); n != 0 || !errors.Is(err, errSource) {
		t.Errorf("Read after the error = %d, %v; want 0, %v", n, err, errSource)
	}
}

// TestReaderReset checks that Reset drops buffered and carried bytes.
func TestReaderReset(t *testing.T) {
	r := NewReader(strings.NewReader("\n" + strings.Repeat("x", 100)))
	var p [1]byte
	if n, err := r.Read(p[:]); n != 1 || err != nil || p[0] != '\r' {
		t.Fatalf("Read = %d, %v, %q; want 1, nil, CR", n, err, p[0])
	}
	r.Reset(strings.NewReader("new\n"))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "new\r\n" {
		t.Errorf("after Reset: %q, %v; want %q", got, err, "new\r\n")
	}
}

// TestReaderAllocs proves Read allocates nothing, nor does Reset.
func TestReaderAllocs(t *testing.T) {
	src := strings.NewReader("")
	r := NewReader(src)
	p := make([]byte, 100)
	text := strings.Repeat("line\r\n", 300)
	allocs := testing.AllocsPerRun(50, func() {
		src.Reset(text)
		r.Reset(src)
		for {
			if _, err := r.Read(p); err != nil {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per conversion, want 0", allocs)
	}
}

// decode is a reference netascii decoder: CR LF -> LF, CR NUL -> CR. Any
// other byte after a CR, or a CR at the end, is an error.
func decode(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\r' {
			out = append(out, b[i])
			continue
		}
		if i+1 == len(b) {
			return nil, errors.New("CR at end")
		}
		i++
		switch b[i] {
		case '\n':
			out = append(out, '\n')
		case 0:
			out = append(out, '\r')
		default:
			return nil, fmt.Errorf("CR followed by %q", b[i])
		}
	}
	return out, nil
}

func FuzzReader(f *testing.F) {
	for i, tc := range readerTests {
		f.Add([]byte(tc.in), uint16(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, shape uint16) {
		// shape picks the source's chunking and the destination size.
		var src io.Reader = bytes.NewReader(data)
		switch shape % 3 {
		case 1:
			src = iotest.OneByteReader(src)
		case 2:
			src = iotest.HalfReader(src)
		}
		size := 1 + int(shape/3)%(2*bufSize+1)
		out, err := readAllWith(NewReader(src), size)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Count(data, []byte{'\n'}) + bytes.Count(data, []byte{'\r'})
		if len(out) != len(data)+lines {
			t.Fatalf("converted %d bytes with %d CR and LF to %d bytes", len(data), lines, len(out))
		}
		back, err := decode(out)
		if err != nil {
			t.Fatalf("output %q is not netascii: %v", out, err)
		}
		if !bytes.Equal(back, data) {
			t.Fatalf("round trip of %q (dst %d): got %q", data, size, back)
		}
	})
}

func BenchmarkReader(b *testing.B) {
	text := bytes.Repeat([]byte("DEFAULT menu.c32\nLABEL linux\n  KERNEL vmlinuz\n"), 1000)
	src := bytes.NewReader(text)
	r := NewReader(src)
	p := make([]byte, 1468)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		src.Reset(text)
		r.Reset(src)
		for {
			if _, err := r.Read(p); err != nil {
				break
			}
		}
	}
}

// TestDecoderInvertsReader checks the receiving side of RFC 1350's
// netascii: whatever the split into blocks, decoding what Reader produced
// gives back the original bytes.
func TestDecoderInvertsReader(t *testing.T) {
	inputs := []string{"", "a", "\n", "\r", "\r\n", "\n\r", "line1\nline2\r\n\r\rend\r", strings.Repeat("ab\r\ncd\r\x00\n", 300)}
	for _, in := range inputs {
		enc, err := io.ReadAll(NewReader(strings.NewReader(in)))
		if err != nil {
			t.Fatal(err)
		}
		for _, split := range []int{1, 2, 3, 512} {
			var d Decoder
			var out []byte
			for i := 0; i < len(enc); i += split {
				out = d.Append(out, enc[i:min(i+split, len(enc))])
			}
			out = d.Flush(out)
			if string(out) != in {
				t.Errorf("split %d: decode(encode(%q)) = %q", split, in, out)
			}
		}
	}
}

// TestDecoderLenient: input that is not netascii (a CR before another
// byte) is kept, never dropped.
func TestDecoderLenient(t *testing.T) {
	var d Decoder
	out := d.Flush(d.Append(nil, []byte("a\rb\r")))
	if string(out) != "a\rb\r" {
		t.Errorf("got %q", out)
	}
}
