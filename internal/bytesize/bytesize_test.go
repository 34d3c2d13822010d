package bytesize

import "testing"

func TestSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "512MiB": 512 << 20, "512m": 512 << 20, "1 GiB": 1 << 30,
		"64K": 64 << 10, "100b": 100,
	} {
		var b Size
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "12TB", "lots", "99999999999GiB"} {
		var b Size
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
	for n, want := range map[int64]string{0: "0", 512 << 20: "512MiB", 1 << 30: "1GiB", 1000: "1000", 3 << 10: "3KiB"} {
		b := Size(n)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", n, got, want)
		}
	}
}
