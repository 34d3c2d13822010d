package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs main itself when the test binary is started as the
// command (see runMain and startProc). Otherwise it runs the tests, and
// the digester's background hashes, like the servers, must be gone when
// they end.
func TestMain(m *testing.M) {
	if os.Getenv("TFTP_BACKEND_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
