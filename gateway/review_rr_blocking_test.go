package gateway_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/syncbuf"
)

// TestReviewRRBlockingSocketGC: a caller that called File().Fd() on its
// UDPConn (the old idiom to set a socket option) leaves the socket in
// blocking mode. With the raw recvmsg in a RawSyscall, the listener's read
// loop then sits in the kernel without telling the runtime, and the next
// stop-the-world (a GC) waits until a datagram arrives.
func TestReviewRRBlockingSocketGC(t *testing.T) {
	if os.Getenv("REVIEW_RR_CHILD") != "" {
		reviewRRChild(os.Getenv("REVIEW_RR_CHILD") == "fd")
		return
	}
	for _, mode := range []string{"nofd", "fd"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReviewRRBlockingSocketGC$", "-test.v")
		cmd.Env = append(os.Environ(), "REVIEW_RR_CHILD="+mode)
		done := make(chan []byte, 1)
		out := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); done <- nil }()
		select {
		case <-done:
			t.Logf("%s: child finished: %s", mode, out.String())
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s: child hung in runtime.GC for 5 s (killed); output so far: %s", mode, out.String())
		}
	}
}

func reviewRRChild(setBlocking bool) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	if setBlocking {
		f, err := pc.File()
		if err != nil {
			panic(err)
		}
		f.Fd() // puts the shared open file description in blocking mode
		f.Close()
	}
	srv := &gateway.Server{Handler: files{"f": pattern(10)}, Logger: discardLogger()}
	go srv.Serve(pc)
	time.Sleep(200 * time.Millisecond) // the read loop is in recvmsg now
	start := time.Now()
	runtime.GC()
	fmt.Printf("GC took %v\n", time.Since(start))
	os.Exit(0)
}
