package gateway

import (
	"testing"

	"github.com/tftpgw/tftpgw/internal/wire"
)

// TestErrorCodesAreWires: the public error codes are the codec's.
func TestErrorCodesAreWires(t *testing.T) {
	for code, want := range map[ErrorCode]int{
		ErrNotDefined: wire.CodeNotDefined, ErrFileNotFound: wire.CodeFileNotFound,
		ErrAccessViolation: wire.CodeAccessViolation, ErrDiskFull: wire.CodeDiskFull,
		ErrIllegalOperation: wire.CodeIllegalOperation, ErrUnknownTID: wire.CodeUnknownTID,
		ErrFileExists: wire.CodeFileExists, ErrNoSuchUser: wire.CodeNoSuchUser,
		ErrOptionNegotiation: wire.CodeOptionNegotiation,
	} {
		if int(code) != want {
			t.Errorf("ErrorCode %d, wire's %d", code, want)
		}
	}
}
