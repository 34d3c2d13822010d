package tftpclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient"
	"github.com/tftpgw/tftpgw/internal/wire"
)

func ExampleGet() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := os.Create("pxelinux.0")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	res, err := tftpclient.Get(ctx, "192.0.2.10:69", "pxelinux.0", f, tftpclient.Options{
		BlockSize:  1468,
		WindowSize: 8,
		TSize:      true,
	})
	if errors.Is(err, &tftpclient.Error{Code: wire.CodeFileNotFound}) {
		log.Fatal("no such file on the server")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes (tsize %d) in %v, options %v\n", res.Size, res.TSize, res.Duration, res.Negotiated)
}

func ExamplePut() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := os.Open("config.txt")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	res, err := tftpclient.Put(ctx, "192.0.2.10:69", "uploads/config.txt", f, fi.Size(), tftpclient.Options{
		BlockSize:  1468,
		WindowSize: 8,
		TSize:      true,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes in %v, %d retransmits\n", res.Size, res.Duration, res.Retransmits)
}

func ExampleProbe() {
	size, err := tftpclient.Probe(context.Background(), "192.0.2.10:69", "bootx64.efi", tftpclient.Options{BlockSize: 1468})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("NBP size:", size)
}
