package udp

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tftpgw/tftpgw/internal/wire"
)

const bigBlock = 65464

// errChanged stands for the session's "file changed".
var errChanged = errors.New("file changed")

// mappedFile is a file of size bytes as a FileServer content gives it.
type mappedFile struct {
	f    *os.File
	size int64
}

// sender returns conn's sender of m's blocks, or nil.
func (m *mappedFile) sender(conn Conn, blksize int) FileSender {
	return conn.FileSender(m.f, m.size, blksize, nil, errChanged)
}

// mappedFixture is a file of size bytes, a session socket and a client
// socket that never reads (the kernel drops what does not fit).
func mappedFixture(t testing.TB, size int) (*mappedFile, Conn, netip.AddrPort) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	to := client.LocalAddr().(*net.UDPAddr).AddrPort()
	return &mappedFile{f: f, size: int64(size)}, newSessionConn(conn, to), to
}

// TestFileSenderUsedFor: only a non-empty file, with blocks too large for
// segmentation, on a session's own socket is sent from its pages;
// everything else takes the window path.
func TestFileSenderUsedFor(t *testing.T) {
	fc, conn, _ := mappedFixture(t, 3*bigBlock)
	empty, _, _ := mappedFixture(t, 0)
	seeked, _, _ := mappedFixture(t, 3*bigBlock)
	if _, err := seeked.f.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    *mappedFile
		conn    Conn
		blksize int
		want    bool
	}{
		{"file_large_blocks", fc, conn, bigBlock, true},
		{"smallest_large_block", fc, conn, mappedMinBlock, true},
		{"blocks_segmentation_packs", fc, conn, mappedMinBlock - 1, false},
		{"empty_file", empty, conn, bigBlock, false},
		{"seeked_by_a_handler", seeked, conn, bigBlock, false},
		{"shared_socket", fc, &MuxConn{}, bigBlock, false},
		{"closed_socket", fc, ClosedConn{}, bigBlock, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.file.sender(tt.conn, tt.blksize)
			if got := f != nil; got != tt.want {
				t.Fatalf("sent from the file: %v, want %v", got, tt.want)
			}
			if f != nil {
				f.Close()
			}
		})
	}
}

// TestFileSenderAllocsPerPacket: a block sent from the file allocates
// nothing (the final one, once per transfer, stats the file).
func TestFileSenderAllocsPerPacket(t *testing.T) {
	fc, conn, _ := mappedFixture(t, 4*bigBlock)
	f := fc.sender(conn, bigBlock)
	if f == nil {
		t.Fatal("no file sender")
	}
	defer f.Close()
	blk := uint16(0)
	allocs := testing.AllocsPerRun(200, func() {
		blk++
		if err := f.Send(blk, int64(blk%3)*bigBlock, bigBlock); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per block, want 0", allocs)
	}
}

// TestFileSenderReleasesAcknowledgedPages: the pages of acknowledged
// blocks leave the process's resident set every releaseBytes, at page
// boundaries, so serving a large file does not grow the RSS by its size.
func TestFileSenderReleasesAcknowledgedPages(t *testing.T) {
	fc, conn, _ := mappedFixture(t, 12<<20)
	f, _ := fc.sender(conn, bigBlock).(*fileSender)
	if f == nil {
		t.Fatal("no file sender")
	}
	defer f.Close()
	page := int64(unix.Getpagesize())
	steps := []struct{ acked, released int64 }{
		{1 << 20, 0},
		{releaseBytes - 1, 0},
		{releaseBytes + 100, releaseBytes},
		{releaseBytes + 2<<20, releaseBytes},
		{2*releaseBytes + page + 1, 2*releaseBytes + page},
		{3*releaseBytes + bigBlock, 2*releaseBytes + page}, // the final ACK, past the end: less than releaseBytes on
	}
	// A regression test: the final ACK once sliced past the mapping.
	fc2, conn2, _ := mappedFixture(t, 2*releaseBytes+1000)
	f2 := fc2.sender(conn2, bigBlock).(*fileSender)
	defer f2.Close()
	f2.Release(2*releaseBytes + bigBlock)
	if f2.released != 2*releaseBytes {
		t.Errorf("after the final ACK of a %d-byte file: released up to %d, want %d", 2*releaseBytes+1000, f2.released, 2*releaseBytes)
	}
	for _, s := range steps {
		f.Release(s.acked)
		if f.released != s.released {
			t.Fatalf("after an ACK at %d: released up to %d, want %d", s.acked, f.released, s.released)
		}
	}
}

// BenchmarkLargeBlockSend compares the two ways a 65464-byte block leaves:
// read into the window and sent from there (two copies), or sent from the
// file's pages (one). b.SetBytes makes -bench report MB/s per core.
func BenchmarkLargeBlockSend(b *testing.B) {
	const blocks = 64
	fc, conn, client := mappedFixture(b, blocks*bigBlock)
	b.Run("window", func(b *testing.B) {
		buf := make([]byte, wire.HeaderSize+bigBlock)
		b.SetBytes(bigBlock)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			wire.AppendDataHeader(buf[:0], uint16(i))
			if _, err := fc.f.ReadAt(buf[wire.HeaderSize:], int64(i%blocks)*bigBlock); err != nil {
				b.Fatal(err)
			}
			if _, err := conn.WriteToUDPAddrPort(buf, client); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file", func(b *testing.B) {
		f := fc.sender(conn, bigBlock)
		defer f.Close()
		b.SetBytes(bigBlock)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := f.Send(uint16(i), int64(i%blocks)*bigBlock, bigBlock); err != nil {
				b.Fatal(err)
			}
		}
	})
}
