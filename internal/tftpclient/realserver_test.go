package tftpclient

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Uploads to real TFTP servers on loopback, when installed: tftp-hpa's
// in.tftpd (Debian package tftpd-hpa) and atftpd (package atftpd). The
// two Debian packages conflict; either binary is looked up in PATH, then
// in /usr/sbin and /usr/local/sbin.

// findBinary returns the path of name or skips the test.
func findBinary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("%s not installed (apt-get install %s): skipping the uploads to it", name, map[string]string{"in.tftpd": "tftpd-hpa", "atftpd": "atftpd"}[name])
	return ""
}

// realServer is a TFTP server process serving a world-writable temporary
// directory on 127.0.0.1.
type realServer struct {
	dir  string
	addr netip.AddrPort
}

// startReal starts the server that args(dir, port) describes on a free
// port, and stops it at cleanup. A port taken in the meantime by someone
// else makes the process exit; it is retried on another port, 3 times.
func startReal(t *testing.T, bin string, args func(dir string, port int) []string) *realServer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root here (in.tftpd -s chroots, atftpd runs as root to write the temporary directory)", filepath.Base(bin))
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // the servers drop to nobody or tftp
		t.Fatal(err)
	}
	for try := 0; try < 3; try++ {
		probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := probe.LocalAddr().(*net.UDPAddr).Port
		probe.Close()
		cmd := exec.Command(bin, args(dir, port)...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// A server that cannot bind exits at once; one that runs keeps the
		// port bound.
		select {
		case err := <-exited:
			t.Logf("%s exited (%v): %s; retrying", bin, err, stderr.String())
			continue
		case <-time.After(300 * time.Millisecond):
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return &realServer{dir: dir, addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))}
	}
	t.Fatalf("%s did not start", bin)
	return nil
}

func startInTFTPD(t *testing.T) *realServer {
	bin := findBinary(t, "in.tftpd")
	return startReal(t, bin, func(dir string, port int) []string {
		// -L foreground, -c create files, -s chroot to dir, -T 200 ms
		// first retransmission timeout.
		return []string{"-L", "-c", "-s", dir, "-a", "127.0.0.1:" + strconv.Itoa(port), "-T", "200000"}
	})
}

func startATFTPD(t *testing.T) *realServer {
	bin := findBinary(t, "atftpd")
	return startReal(t, bin, func(dir string, port int) []string {
		return []string{"--daemon", "--no-fork", "--port", strconv.Itoa(port), "--bind-address", "127.0.0.1",
			"--logfile", "/dev/null", "--user", "root", "--group", "root", dir}
	})
}

// putFile uploads data as name and checks the file on disk.
func (s *realServer) putFile(t *testing.T, server, name string, data []byte, o Options) Result {
	t.Helper()
	res, err := Put(ctxT(t), server, name, bytes.NewReader(data), int64(len(data)), o)
	if err != nil {
		t.Fatalf("%s (%d bytes): %v", name, len(data), err)
	}
	// The server may write the last block after its final ACK (atftpd
	// does, and its file has the full length before it has the content):
	// wait for it, 2 s at most.
	var got []byte
	for i := 0; i < 100; i++ {
		got, err = os.ReadFile(filepath.Join(s.dir, name))
		if err == nil && bytes.Equal(got, data) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s: %d bytes on disk, want %d identical ones (%v)", name, len(got), len(data), err)
	}
	return res
}

// realSizes are the sizes uploaded to each server in each mode.
var realSizes = []int{0, 1, 511, 512, 513, 512 * 7, 100_000}

func TestPutInTFTPD(t *testing.T) {
	srv := startInTFTPD(t)
	for _, win := range []int{0, 1, 4, 16} {
		for _, blk := range []int{0, 1428} {
			t.Run(fmt.Sprintf("blksize=%d/window=%d", blk, win), func(t *testing.T) {
				for _, size := range realSizes {
					name := fmt.Sprintf("o-%d-%d-%d", blk, win, size)
					res := srv.putFile(t, srv.addr.String(), name, payload(size), fast(Options{BlockSize: blk, WindowSize: win, TSize: true}))
					// tftp-hpa 5.2 knows no windowsize: lock-step.
					if res.WindowSize != 1 || (blk != 0 && res.BlockSize != blk) {
						t.Errorf("%s: blksize/windowsize %d/%d", name, res.BlockSize, res.WindowSize)
					}
				}
			})
		}
	}
	t.Run("netascii", func(t *testing.T) {
		// tftp-hpa stores netascii as Unix text: what was sent is on disk.
		text := bytes.Repeat([]byte("line one\nline two\r\n\rbare CR\n"), 4000)
		for _, size := range []int{0, 1, 511, 512, 513, len(text)} {
			srv.putFile(t, srv.addr.String(), fmt.Sprintf("a-%d", size), text[:size], fast(Options{Mode: "netascii", BlockSize: 1024, TSize: true}))
		}
	})
}

// TestPutInTFTPDRollover uploads 65,600 blocks of 512 bytes and a short
// one in lock-step: block numbers wrap from 65535 to 0.
func TestPutInTFTPDRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("33 MB in lock-step")
	}
	srv := startInTFTPD(t)
	data := payload(65_600*512 + 100)
	start := time.Now()
	res := srv.putFile(t, srv.addr.String(), "big", data, Options{RetransmitTimeout: time.Second})
	t.Logf("%d blocks in %v, %d retransmits", res.Packets, time.Since(start), res.Retransmits)
	if res.Packets < 65_601 {
		t.Errorf("Packets = %d", res.Packets)
	}
}

// TestPutInTFTPDThroughLossyProxy uploads through a proxy that drops,
// duplicates and reorders 5 % of the datagrams each way. The WRQ and the
// server's final ACK are spared: tftp-hpa opens (and truncates) the file
// for each WRQ it gets, and dallies only once after the final block.
func TestPutInTFTPDThroughLossyProxy(t *testing.T) {
	srv := startInTFTPD(t)
	for i, size := range []int{0, 513, 40_000, 300_000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			data := payload(size)
			final := uint16(size/1024 + 1)
			p := gatewaytest.NewProxy(t, srv.addr, gatewaytest.ProxyConfig{
				DropRate: 0.05, DuplicateRate: 0.05, ReorderRate: 0.05, Seed: int64(i + 1),
				Exempt: func(dir gatewaytest.Direction, pkt []byte) bool {
					if op, err := wire.PacketOpcode(pkt); err == nil && op == wire.OpWRQ {
						return true
					}
					b, err := wire.ParseAck(pkt)
					return dir == gatewaytest.ServerToClient && err == nil && b == final
				},
			})
			res := srv.putFile(t, p.Addr().String(), fmt.Sprintf("lossy-%d", size), data,
				Options{BlockSize: 1024, TSize: true, RetransmitTimeout: 150 * time.Millisecond, Retries: 30})
			st := p.Stats()
			t.Logf("%d DATA sent, %d retransmits, %d duplicate ACKs; proxy dropped %v, duplicated %v, reordered %v",
				res.Packets, res.Retransmits, res.Duplicates, st.Dropped, st.Duplicated, st.Reordered)
		})
	}
}

func TestPutATFTPD(t *testing.T) {
	srv := startATFTPD(t)
	for _, win := range []int{0, 1, 4, 16} {
		t.Run(fmt.Sprintf("window=%d", win), func(t *testing.T) {
			for _, size := range realSizes {
				name := fmt.Sprintf("o-%d-%d", win, size)
				res := srv.putFile(t, srv.addr.String(), name, payload(size), fast(Options{BlockSize: 1024, WindowSize: win, TSize: true}))
				// atftpd 0.8 negotiates windowsize for writes too.
				if res.BlockSize != 1024 || res.WindowSize != max(win, 1) {
					t.Errorf("%s: blksize/windowsize %d/%d", name, res.BlockSize, res.WindowSize)
				}
			}
		})
	}
	t.Run("netascii", func(t *testing.T) {
		text := bytes.Repeat([]byte("line one\nline two\r\n\rbare CR\n"), 400)
		srv.putFile(t, srv.addr.String(), "text", text, fast(Options{Mode: "netascii"}))
	})
}

// TestPutATFTPDRollover uploads 65,600 blocks of 512 bytes and a short one
// in windows: block numbers wrap from 65535 to 0.
func TestPutATFTPDRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("33 MB per window size")
	}
	srv := startATFTPD(t)
	data := payload(65_600*512 + 100)
	for _, win := range []int{4, 16} {
		t.Run(fmt.Sprintf("window=%d", win), func(t *testing.T) {
			start := time.Now()
			res := srv.putFile(t, srv.addr.String(), fmt.Sprintf("big-%d", win), data, Options{WindowSize: win, RetransmitTimeout: time.Second})
			t.Logf("%d blocks in %v, %d retransmits", res.Packets, time.Since(start), res.Retransmits)
			if res.WindowSize != win || res.Packets < 65_601 {
				t.Errorf("windowsize %d, Packets %d", res.WindowSize, res.Packets)
			}
		})
	}
}
