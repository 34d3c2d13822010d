//go:build !linux

package udp

import "net"

// parseControl is implemented for Linux only; elsewhere replies leave from
// the listening socket's bound address and sessions start when their
// request is read.
func parseControl([]byte) control { return control{} }

func enableRecvStamps(*net.UDPConn) {}
