package gateway_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a
// session, a listener, a client's reader).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
