package gateway_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
)

// TestValidate: Validate names every field the server would clamp or
// replace, and accepts zero values (defaults) and negative limits.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *gateway.Server
		want string // "" for valid
	}{
		{"zero value", &gateway.Server{}, ""},
		{"limits off", &gateway.Server{MaxSessions: -1, MaxSessionsPerClient: -1, ClientRequestRate: -1, MaxWindowMemory: -1, MaxWindowMemoryPerClient: -1, Retries: -1}, ""},
		{"ranges", &gateway.Server{MaxBlockSize: 65464, MaxWindowSize: 32767}, ""},
		{"blksize below 8", &gateway.Server{MaxBlockSize: 4}, "MaxBlockSize 4"},
		{"blksize above 65464", &gateway.Server{MaxBlockSize: 100000}, "MaxBlockSize 100000"},
		{"negative blksize", &gateway.Server{MaxBlockSize: -1}, "MaxBlockSize -1"},
		{"window too large", &gateway.Server{MaxWindowSize: 40000}, "MaxWindowSize 40000"},
		{"negative timeout", &gateway.Server{Timeout: -time.Second}, "Timeout -1s"},
		{"negative min timeout", &gateway.Server{MinTimeout: -time.Second}, "MinTimeout -1s"},
		{"negative interval", &gateway.Server{StatsInterval: -time.Second}, "StatsInterval -1s"},
		{"NaN rate", &gateway.Server{ClientRequestRate: math.NaN()}, "ClientRequestRate NaN"},
		{"port range", &gateway.Server{PortRange: gateway.PortRange{First: 50000, Last: 50999}}, ""},
		{"one port", &gateway.Server{PortRange: gateway.PortRange{First: 50000, Last: 50000}}, ""},
		{"port range beside Addr's port", &gateway.Server{Addr: "127.0.0.1:6969", PortRange: gateway.PortRange{First: 6970, Last: 6979}}, ""},
		{"port range, Addr port 0", &gateway.Server{Addr: "127.0.0.1:0", PortRange: gateway.PortRange{First: 1, Last: 9}}, ""},
		{"inverted port range", &gateway.Server{PortRange: gateway.PortRange{First: 50999, Last: 50000}}, "PortRange 50999-50000: first port 50999 is above last port 50000"},
		{"port range from 0", &gateway.Server{PortRange: gateway.PortRange{First: 0, Last: 10}}, "PortRange 0-10: port 0"},
		{"port range with SinglePort", &gateway.Server{SinglePort: true, PortRange: gateway.PortRange{First: 50000, Last: 50003}}, "PortRange 50000-50003 with SinglePort"},
		{"port range holds the default port", &gateway.Server{PortRange: gateway.PortRange{First: 60, Last: 70}}, `PortRange 60-70 holds port 69 of Addr ""`},
		{"port range holds Addr's port", &gateway.Server{Addr: "[::]:6969", PortRange: gateway.PortRange{First: 6969, Last: 6969}}, `holds port 6969 of Addr "[::]:6969"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
