package gateway_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/tftpclient"
)

// TestRFC7440_BlocksLargerThanTheMTU is a regression test (found by a
// review helper on a veth pair): with a windowsize, a session asks the
// kernel to segment its sends (UDP_SEGMENT), and a socket with that option
// sends no datagram larger than the path MTU at all. Blocks bigger than
// the MTU (blksize 1468 over IPv6 on Ethernet, any blksize over 1472 on
// IPv4) never left: the segmented send was refused, and so was every
// single one after it, until the session timed out. Such blocks must go
// out as IP fragments, as they do without a window.
//
// The test runs itself again in a network namespace of its own (root and
// unshare(1) needed), where loopback gets Ethernet's MTU of 1500.
func TestRFC7440_BlocksLargerThanTheMTU(t *testing.T) {
	if os.Getenv("TFTPGW_TEST_NETNS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare(1)")
		}
		cmd := exec.Command(unshare, "--net", os.Args[0], "-test.run=^TestRFC7440_BlocksLargerThanTheMTU$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "TFTPGW_TEST_NETNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "unshare failed") {
				t.Skipf("no network namespace here: %s", out)
			}
			t.Fatalf("in a network namespace: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestRFC7440_BlocksLargerThanTheMTU") {
			t.Fatalf("in a network namespace, the test did not pass:\n%s", out)
		}
		return
	}
	loopbackMTU(t, 1500)
	for _, tc := range []struct {
		network, addr   string
		blksize, window int
		size            int
	}{
		{"udp6", "[::1]:0", 1468, 16, 200 << 10}, // 1468 + 48 bytes of headers: U-Boot's default blksize over IPv6
		{"udp4", "127.0.0.1:0", 1468, 16, 200 << 10},
		{"udp4", "127.0.0.1:0", 2000, 4, 200 << 10},
		{"udp4", "127.0.0.1:0", 8192, 8, 200 << 10},
		{"udp6", "[::1]:0", 8192, 8, 200 << 10},
		{"udp4", "127.0.0.1:0", 1400, 8, 200 << 10},
		// Every send a single datagram (a review helper's cases): a
		// window of 2 wraps the ring at each block, and a file of one or
		// two blocks fills one or two slots. Only the refused segmented
		// run turned segmentation off; a refused single one did not.
		{"udp4", "127.0.0.1:0", 8192, 2, 200 << 10},
		{"udp4", "127.0.0.1:0", 8192, 8, 4000},
		{"udp4", "127.0.0.1:0", 8192, 8, 10000},
		{"udp6", "[::1]:0", 1468, 4, 2000},
	} {
		content := gatewaytest.Pattern(tc.size)
		ts := gatewaytest.NewServerOn(t, tc.network, tc.addr, gatewaytest.Files{"f": content}, gatewaytest.FixedTimer, func(s *gateway.Server) { s.Timeout = time.Second })
		var got bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := tftpclient.Get(ctx, ts.Addr().String(), "f", &got, tftpclient.Options{BlockSize: tc.blksize, WindowSize: tc.window, RetransmitTimeout: time.Second})
		cancel()
		if err != nil || !bytes.Equal(got.Bytes(), content) {
			t.Errorf("%s blksize %d windowsize %d size %d: %v, %d of %d bytes", tc.network, tc.blksize, tc.window, tc.size, err, got.Len(), len(content))
		}
		if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
			t.Errorf("%s blksize %d windowsize %d size %d: outcome %v", tc.network, tc.blksize, tc.window, tc.size, st.Outcome)
		}
	}
}

// loopbackMTU brings lo up with the given MTU (in a test's own network
// namespace).
func loopbackMTU(t *testing.T, mtu uint32) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint32(mtu)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
		t.Fatalf("lo mtu: %v", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("lo up: %v", err)
	}
}
