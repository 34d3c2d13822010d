package cache_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/cache"
	"github.com/tftpgw/tftpgw/gateway/remote"
)

// A directory served through the cache: each request opens the file to
// check its size and modification time, and an unchanged file is served
// from memory, read once however many clients fetch it at the same time.
func Example() {
	root, err := os.OpenRoot("/srv/tftp")
	if err != nil {
		log.Fatal(err)
	}
	h := &cache.Handler{Next: gateway.FileServer(root), MaxBytes: 512 << 20}
	srv := &gateway.Server{Addr: ":69", Handler: h}
	log.Fatal(srv.ListenAndServe())
}

// Content from a gRPC backend: what the backend sends with a max age is
// served from memory without a backend call until it is that old.
func Example_remote() {
	rh, err := remote.Dial("dns:///content.internal:7000", remote.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer rh.Close()
	h := &cache.Handler{Next: rh, MaxBytes: 1 << 30}
	defer h.Close()
	srv := &gateway.Server{Addr: ":69", Handler: h}
	log.Fatal(srv.ListenAndServe())
}

// versioned is content that may be cached for a minute.
type versioned struct{ gateway.Content }

func (versioned) Info() gateway.ContentInfo {
	return gateway.ContentInfo{ETag: "v1", MaxAge: time.Minute}
}

func ExampleHandler_Stats() {
	calls := 0
	next := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		calls++
		return versioned{gateway.BytesContent([]byte("DEFAULT linux\n"))}, nil
	})
	h := &cache.Handler{Next: next}
	defer h.Close()

	for range 3 {
		c, err := h.ServeTFTP(context.Background(), &gateway.Request{Path: "pxelinux.cfg/default", Mode: "octet"})
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		fmt.Printf("%q\n", b)
	}
	st := h.Stats()
	fmt.Printf("Next called %d time(s); %d miss, %d hits, %d bytes served\n", calls, st.Misses, st.Hits, st.BytesServed)
	// Output:
	// "DEFAULT linux\n"
	// "DEFAULT linux\n"
	// "DEFAULT linux\n"
	// Next called 1 time(s); 1 miss, 2 hits, 42 bytes served
}
