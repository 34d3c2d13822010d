package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The digester's background hashes, like the servers, must be gone when
// the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
