// Package examples holds example content services and a stats sink, and
// the end-to-end tests that run them against the real binaries:
// go-backend (a one-screen Go content service on package backend),
// python-backend and node-backend (content services in other languages,
// run behind an edge next to the Go reference backend, cmd/tftp-backend;
// all three answer boot.ipxe with a script made per client), and
// python-collector (a StatsSink in Python, behind tftpgw -stats-sink). Its
// contract test runs the tftpgw binary in front of
// ../testdata/contract/backend.py, a Python backend that breaks
// content.proto's rules on purpose. It has no Go API.
package examples
