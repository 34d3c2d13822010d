//go:build !linux

package udp

import "net"

// enableGSO: UDP segmentation offload is used on Linux only.
func enableGSO(socket, int) int { return 0 }

func disableGSO(socket) {}

const listenerRecvBuffer = 8 << 20

func growRecvBuffer(c *net.UDPConn, n int) { c.SetReadBuffer(n) }
