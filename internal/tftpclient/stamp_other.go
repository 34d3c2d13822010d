//go:build !linux

package tftpclient

import (
	"net"
	"time"
)

// Kernel receive timestamps are read on Linux only; elsewhere
// Result.TimeToFirstWire stays 0.
func setStamps(*net.UDPConn, bool) bool { return false }

const stampSpace = 0

func parseStamp([]byte) (time.Time, bool) { return time.Time{}, false }
