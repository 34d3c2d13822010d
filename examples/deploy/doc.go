// Package deploy holds the deployment examples of tftpgw (systemd units,
// a Dockerfile and a compose file, Kubernetes manifests; see README.md)
// and the tests that validate them offline: systemd-analyze verify on the
// units, the Dockerfile parsed with BuildKit's parser and its go build run
// for real, the compose file loaded with compose-go, the manifests decoded
// strictly into the Kubernetes API types, and every tftpgw command line
// and configuration file they hold checked with tftpgw -check.
//
// It is a Go module of its own, so that the main module does not depend on
// the Kubernetes, compose and BuildKit modules. It has no Go API.
package deploy
