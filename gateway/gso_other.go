//go:build !linux

package gateway

import "net"

// enableGSO: UDP segmentation offload is used on Linux only.
func enableGSO(*net.UDPConn, int) int { return 0 }
