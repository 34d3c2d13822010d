package placeholder

import (
	"net/netip"
	"testing"
)

func TestScan(t *testing.T) {
	known := func(n string) bool { return n == "path" || n == "client_ip" }
	for _, tc := range []struct {
		s    string
		lit  byte
		name string
		n    int
		err  bool
	}{
		{"{{x", '{', "", 2, false},
		{"}}x", '}', "", 2, false},
		{"{path}/x", 0, "path", 6, false},
		{"{client_ip}", 0, "client_ip", 11, false},
		{"{mac}", 0, "", 0, true},
		{"{path", 0, "", 0, true},
		{"}x", 0, "", 0, true},
	} {
		lit, name, n, err := Scan(tc.s, 0, known, "{path}, {client_ip}")
		if lit != tc.lit || name != tc.name || n != tc.n || (err != nil) != tc.err {
			t.Errorf("Scan(%q) = %q, %q, %d, %v", tc.s, lit, name, n, err)
		}
	}
}

func TestAppendClientIP(t *testing.T) {
	for _, tc := range []struct{ addr, ip, hex string }{
		{"192.168.0.1", "192.168.0.1", "C0A80001"},
		{"::ffff:10.0.0.5", "10.0.0.5", "0A000005"},
		{"fe80::1%eth0", "fe80::1", "FE800000000000000000000000000001"},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := string(AppendClientIP(nil, a)); got != tc.ip {
			t.Errorf("AppendClientIP(%s) = %q, want %q", tc.addr, got, tc.ip)
		}
		if got := string(AppendClientIPHex(nil, a)); got != tc.hex {
			t.Errorf("AppendClientIPHex(%s) = %q, want %q", tc.addr, got, tc.hex)
		}
	}
}
