package remote_test

import (
	"context"
	"crypto/tls"
	"log"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/remote"
)

// A TFTP server whose files come from two content-service replicas,
// balanced round robin, over TLS with a bearer token.
func Example() {
	h, err := remote.Dial("10.0.0.5:7000,10.0.0.6:7000", remote.Config{
		HeaderTimeout: 2 * time.Second,
		TLS:           &tls.Config{ServerName: "content.internal"},
		TokenFile:     "/run/secrets/tftpgw-token",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	srv := &gateway.Server{Addr: ":69", Handler: h}
	log.Fatal(srv.ListenAndServe())
}

// The handler can also be called directly, for example to fetch a file
// the way a TFTP session would.
func ExampleHandler_ServeTFTP() {
	h, err := remote.Dial("dns:///content.internal:7000", remote.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	c, err := h.ServeTFTP(context.Background(), &gateway.Request{
		SessionID: "example", RawPath: "pxelinux.0", Path: "pxelinux.0", Mode: "octet",
	})
	if err != nil {
		// gateway.ErrorFor(err) is the TFTP error a client would get.
		log.Fatal(gateway.ErrorFor(err))
	}
	defer c.Close()
	st := c.(gateway.BackendContent).BackendStats()
	log.Printf("size %d from %s after %s", c.Size(), st.Peer, st.HeaderLatency)
}
