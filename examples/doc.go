// Package examples holds example content services written in other
// languages (python-backend, node-backend) and the end-to-end test that
// runs them behind a tftpgw edge next to the Go reference backend
// (cmd/tftp-backend). It has no Go API.
package examples
