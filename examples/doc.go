// Package examples holds example content services written in other
// languages (python-backend, node-backend) and the end-to-end test that
// runs them behind a tftpgw edge next to the Go reference backend
// (cmd/tftp-backend). Its contract test runs the tftpgw binary in front of
// ../testdata/contract/backend.py, a Python backend that breaks
// content.proto's rules on purpose. It has no Go API.
package examples
