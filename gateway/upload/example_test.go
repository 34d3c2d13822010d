package upload_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/upload"
)

// A server that serves /srv/tftp and takes uploads of configurations and
// crash dumps, up to 64 MiB, each client's in a directory of its own
// under /srv/tftp-uploads.
func Example() {
	p := &upload.Policy{
		Allow:   []string{"configs/*.cfg", "dumps/**"},
		MaxSize: 64 << 20,
		Path:    "{client_ip}/{path}",
	}
	if err := p.Validate(); err != nil {
		log.Fatal(err)
	}
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	srv := &gateway.Server{
		Addr:         ":69",
		Handler:      gateway.FileServer(root),
		WriteHandler: p.Wrap(&upload.Dir{Root: "/srv/tftp-uploads"}),
	}
	log.Fatal(srv.ListenAndServe())
}

// What the server does with an upload, step by step: the policy places
// it, Dir writes a temporary file, and Commit gives it its name.
func ExamplePolicy_Wrap() {
	dir, err := os.MkdirTemp("", "uploads")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	p := &upload.Policy{Allow: []string{"configs/*"}, Path: "hosts/{client_ip_hex}/{path}"}
	h := p.Wrap(&upload.Dir{Root: dir})

	req := &gateway.Request{
		Path:       "configs/switch1",
		Mode:       "octet",
		RemoteAddr: netip.MustParseAddrPort("192.168.0.1:2000"),
	}
	u, err := h.ReceiveTFTP(context.Background(), req)
	if err != nil {
		log.Fatal(err)
	}
	u.Write([]byte("hostname switch1\n"))
	if err := u.Commit(); err != nil {
		u.Abort()
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, req.Path))
	fmt.Printf("%s: %s", req.Path, b)

	_, err = h.ReceiveTFTP(context.Background(), &gateway.Request{Path: "pxelinux.0", RemoteAddr: req.RemoteAddr})
	fmt.Println("pxelinux.0:", gateway.ErrorFor(err).Code)

	_, err = h.ReceiveTFTP(context.Background(), &gateway.Request{Path: "configs/switch1", RemoteAddr: req.RemoteAddr})
	fmt.Println("configs/switch1 again:", gateway.ErrorFor(err).Code)
	// Output:
	// hosts/C0A80001/configs/switch1: hostname switch1
	// pxelinux.0: 2
	// configs/switch1 again: 6
}
