package backend_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tftpgw/tftpgw/backend"
	"github.com/tftpgw/tftpgw/gateway"
	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// A handler written for the in-process gateway is served over gRPC; the
// client here plays the part of the edge.
func ExampleNewServer() {
	hello := gateway.HandlerFunc(func(ctx context.Context, req *gateway.Request) (gateway.Content, error) {
		if req.Path != "hello.txt" {
			return nil, &gateway.Error{Code: gateway.ErrFileNotFound, Message: "no such file"}
		}
		msg := fmt.Sprintf("hello, %s\n", req.RemoteAddr.Addr())
		return gateway.BytesContent([]byte(msg)), nil
	})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := backend.NewServer(hello, backend.Config{Logger: slog.New(slog.DiscardHandler)})
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	stream, err := tftpgwv1.NewContentServiceClient(conn).Read(context.Background(), &tftpgwv1.ReadRequest{
		Path:   "hello.txt",
		Mode:   "octet",
		Client: &tftpgwv1.Address{Ip: "192.0.2.1", Port: 1024},
	})
	if err != nil {
		log.Fatal(err)
	}
	var data strings.Builder
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if h := msg.GetHeader(); h != nil {
			fmt.Println("size:", h.GetSize())
		}
		data.Write(msg.GetData())
	}
	fmt.Print(data.String())
	// Output:
	// size: 17
	// hello, 192.0.2.1
}
