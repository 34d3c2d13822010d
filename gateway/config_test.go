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
