package jsonlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestEscaping: through Escaping, a JSON line holds no character that the
// text format would escape; each is written as its JSON escape, which
// decodes to the character logged.
func TestEscaping(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string // want: the value as it appears in the line
	}{
		{"plain ASCII", "pxelinux.0", `"pxelinux.0"`},
		{"printable Unicode kept", "grüße/日本.cfg", `"grüße/日本.cfg"`},
		{"C1 NEL and CSI", "a\u0085b\u009bc", `"a\u0085b\u009bc"`},
		{"bidi override", "evil\u202eexe.txt", `"evil\u202eexe.txt"`},
		{"bidi isolates and marks", "\u2066\u2069\u200e\u200f\u061c", `"\u2066\u2069\u200e\u200f\u061c"`},
		{"zero width and BOM", "a\u200bb\ufeff", `"a\u200bb\ufeff"`},
		{"DEL", "a\x7fb", `"a\u007fb"`},
		{"C0 escaped by the handler", "a\x1b[31mb\x00", `"a\u001b[31mb\u0000"`},
		{"line separators escaped by the handler", "a\u2028b", `"a\u2028b"`},
		{"beyond the BMP: a tag character", "a\U000e0041b", `"a\udb40\udc41b"`},
		{"beyond the BMP: printable kept", "a\U0001f600b", "\"a\U0001f600b\""},
		{"invalid UTF-8", "a\xffb", `"a\ufffdb"`},
		{"backslash and quote", `\Boot\"BCD`, `"\\Boot\\\"BCD"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(Escaping(&buf), &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})).Info("session end", "path", tc.in)
			want := `{"level":"INFO","msg":"session end","path":` + tc.want + "}\n"
			if got := buf.String(); got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			var m map[string]string
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if utf8.ValidString(tc.in) && m["path"] != tc.in {
				t.Errorf("decodes to %q, want %q", m["path"], tc.in)
			}
		})
	}
}

// TestEscapingKeysAndGroups: keys, messages and group names are escaped
// too, and a line without anything to escape is passed through as it is.
func TestEscapingKeysAndGroups(t *testing.T) {
	var buf bytes.Buffer
	w := Escaping(&buf)
	line := []byte("{\"msg\":\"m\u202e\",\"g\u0085\":{\"k\u009b\":1}}\n")
	n, err := w.Write(line)
	if err != nil || n != len(line) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(line))
	}
	if got, want := buf.String(), `{"msg":"m\u202e","g\u0085":{"k\u009b":1}}`+"\n"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	buf.Reset()
	plain := []byte(`{"msg":"ok"}` + "\n")
	if _, err := w.Write(plain); err != nil || buf.String() != string(plain) {
		t.Errorf("plain line: got %q, %v", buf.String(), err)
	}
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

// TestEscapingWriteError: the underlying writer's error comes back.
func TestEscapingWriteError(t *testing.T) {
	for _, in := range []string{"plain", "with \u202e"} {
		if _, err := Escaping(failWriter{}).Write([]byte(in)); !errors.Is(err, errWrite) {
			t.Errorf("%q: %v, want %v", in, err, errWrite)
		}
	}
}

// TestEscapingMatchesTextFormat: a character is escaped in a JSON line
// exactly when the text format escapes it in a quoted value.
func TestEscapingMatchesTextFormat(t *testing.T) {
	for r := rune(0x7f); r < 0x3000; r++ {
		s := "a" + string(r)
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, nil)).Info("m", "v", s+" ") // the space forces quoting
		slog.New(slog.NewJSONHandler(Escaping(&js), nil)).Info("m", "v", s)
		textEscaped := !strings.Contains(text.String(), string(r))
		jsonEscaped := !strings.Contains(js.String(), string(r))
		if textEscaped != jsonEscaped {
			t.Errorf("U+%04X: escaped in text %v, in JSON %v", r, textEscaped, jsonEscaped)
		}
	}
}
