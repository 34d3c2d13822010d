package rewrite_test

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/rewrite"
)

// Rules for clients that were served by tftp-hpa with a remap file: a
// legacy boot/ prefix, firmware asking in upper case, a per-client
// directory used when it has the file, and a private directory.
func Example() {
	rw, err := rewrite.New([]rewrite.Rule{
		{Match: `^/?boot/(.*)$`, Replace: "$1"},
		{Match: `(?i)^pxelinux\.cfg/(.*)$`, Replace: "pxelinux.cfg/$1", Lowercase: true},
		{Match: `^(.*)$`, Replace: "hosts/{client_ip}/$1", IfExists: true},
		{Match: `^secret/`, Deny: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	srv := &gateway.Server{
		Addr:    ":69",
		Handler: gateway.Chain(gateway.FileServer(root), rw.Middleware()),
	}
	log.Fatal(srv.ListenAndServe())
}

// Rewrite shows what the rules make of a path without serving it, as a
// configuration check does; exists stands for the served directory.
func ExampleRewriter_Rewrite() {
	rw, err := rewrite.New([]rewrite.Rule{
		{Match: `^/?boot/(.*)$`, Replace: "$1"},
		{Match: `(?i)^pxelinux\.cfg/(.*)$`, Replace: "pxelinux.cfg/$1", Lowercase: true},
		{Match: `^pxelinux\.cfg/default$`, Replace: "pxelinux.cfg/{client_ip_hex}", IfExists: true},
		{Match: `^secret/`, Deny: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	exists := func(path string) (bool, error) { return path == "pxelinux.cfg/C0A80001", nil }
	for _, r := range []struct{ path, client string }{
		{"boot/vmlinuz", "192.168.0.1"},
		{"PXELINUX.CFG/DEFAULT", "192.168.0.1"},
		{"PXELINUX.CFG/DEFAULT", "::ffff:192.168.0.2"},
		{"boot/secret/key", "192.168.0.1"},
	} {
		req := &gateway.Request{Path: r.path, RemoteAddr: netip.AddrPortFrom(netip.MustParseAddr(r.client), 2000)}
		p, err := rw.Rewrite(req, exists)
		var denied *rewrite.DeniedError
		switch {
		case errors.As(err, &denied):
			fmt.Printf("%s from %s: refused by rule %d, ERROR %d %q\n", r.path, r.client, denied.Rule, denied.Err.Code, denied.Err.Message)
		case err != nil:
			fmt.Printf("%s from %s: %v\n", r.path, r.client, err)
		default:
			fmt.Printf("%s from %s: %s\n", r.path, r.client, p)
		}
	}
	// Output:
	// boot/vmlinuz from 192.168.0.1: vmlinuz
	// PXELINUX.CFG/DEFAULT from 192.168.0.1: pxelinux.cfg/C0A80001
	// PXELINUX.CFG/DEFAULT from ::ffff:192.168.0.2: pxelinux.cfg/default
	// boot/secret/key from 192.168.0.1: refused by rule 3, ERROR 2 "access violation"
}

// New names each rule it refuses by its index.
func ExampleNew() {
	_, err := rewrite.New([]rewrite.Rule{
		{Match: `^boot/(.*)$`, Replace: "$1"},
		{Match: `^(.*)$`, Replace: "hosts/{client_mac}/$1"},
		{Match: `^(.*)$`, Replace: "$2"},
	})
	fmt.Println(err)
	// Output:
	// rewrite: rule 1: replace "hosts/{client_mac}/$1": unknown placeholder {client_mac} (known: {client_ip}, {client_ip_hex}; write {{ for a literal brace)
	// rewrite: rule 2: replace "$2": $2 refers to group 2, and the match has 1
}
