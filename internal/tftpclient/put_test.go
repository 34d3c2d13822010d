package tftpclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tftpgw/tftpgw/internal/tftpclient/tftpclienttest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// toNetascii is the reference translation for the tests.
func toNetascii(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\r\x00"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func TestPutMatrix(t *testing.T) {
	for _, blk := range []int{0, 8, 512, 1428} {
		for _, win := range []int{0, 1, 4, 16} {
			for _, mode := range []string{"octet", "netascii"} {
				t.Run(fmt.Sprintf("blksize=%d/window=%d/%s", blk, win, mode), func(t *testing.T) {
					eb := blk
					if eb == 0 {
						eb = 512
					}
					ew := max(win, 1)
					srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true})
					for _, size := range []int{0, 1, eb - 1, eb, eb + 1, 5 * eb, 7*eb + 3} {
						data := payload(size)
						if mode == "netascii" {
							data = bytes.Repeat([]byte("ab\r\n\rc\n\n\x00"), size/9+1)[:size]
						}
						name := fmt.Sprintf("up/%d", size)
						res, err := Put(ctxT(t), srv.Addr(), name, bytes.NewReader(data), int64(size), fast(Options{
							BlockSize: blk, WindowSize: win, TSize: true, Timeout: 3, Mode: mode,
						}))
						if err != nil {
							t.Fatalf("size %d: %v", size, err)
						}
						want := data
						if mode == "netascii" {
							want = toNetascii(data)
						}
						got, ok := srv.Upload(name)
						if !ok || !bytes.Equal(got, want) {
							t.Fatalf("size %d: server got %d bytes (%v), want %d", size, len(got), ok, len(want))
						}
						nblocks := len(want)/eb + 1
						if res.Size != int64(len(want)) || res.Packets != int64(nblocks) || res.Retransmits != 0 {
							t.Errorf("size %d: Size/Packets/Retransmits = %d/%d/%d, want %d/%d/0", size, res.Size, res.Packets, res.Retransmits, len(want), nblocks)
						}
						if res.BlockSize != eb || res.WindowSize != ew {
							t.Errorf("size %d: BlockSize/WindowSize = %d/%d, want %d/%d", size, res.BlockSize, res.WindowSize, eb, ew)
						}
						if res.TSize != int64(size) || res.Negotiated["timeout"] != "3" {
							t.Errorf("size %d: TSize %d, Negotiated %v", size, res.TSize, res.Negotiated)
						}
						if res.TimeToFirst <= 0 || res.Duration < res.TimeToFirst {
							t.Errorf("TimeToFirst %v, Duration %v", res.TimeToFirst, res.Duration)
						}
					}
					if opts := srv.Options()[0]; !hasOpt(opts, "tsize", "0") {
						t.Errorf("WRQ options %v, want tsize 0 for the empty file", opts)
					}
				})
			}
		}
	}
}

func hasOpt(opts [][2]string, name, value string) bool {
	for _, kv := range opts {
		if kv == [2]string{name, value} {
			return true
		}
	}
	return false
}

func TestPutWithoutOACK(t *testing.T) {
	// The server ignores the options and answers ACK 0: 512-byte lock-step.
	for _, size := range []int{0, 512, 1500} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true, NoOptions: true})
			data := payload(size)
			res, err := Put(ctxT(t), srv.Addr(), "f", bytes.NewReader(data), int64(size), fast(Options{BlockSize: 1024, WindowSize: 8, TSize: true}))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := srv.Upload("f"); !bytes.Equal(got, data) {
				t.Fatalf("server got %d bytes, want %d", len(got), size)
			}
			if res.Negotiated != nil || res.TSize != -1 || res.BlockSize != 512 || res.WindowSize != 1 {
				t.Errorf("Negotiated %v, TSize %d, %d/%d", res.Negotiated, res.TSize, res.BlockSize, res.WindowSize)
			}
		})
	}
}

func TestPutUnknownSizeSendsNoTSize(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true})
	data := payload(3000)
	// A reader of unknown length that returns short reads.
	if _, err := Put(ctxT(t), srv.Addr(), "f", iotest.HalfReader(bytes.NewReader(data)), -1, fast(Options{TSize: true, BlockSize: 1000})); err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.Upload("f"); !bytes.Equal(got, data) {
		t.Fatal("content mismatch")
	}
	if opts := srv.Options()[0]; !reflect.DeepEqual(opts, [][2]string{{"blksize", "1000"}}) {
		t.Errorf("WRQ options %v", opts)
	}
	if _, err := Put(ctxT(t), srv.Addr(), "f", bytes.NewReader(nil), -2, Options{}); err == nil {
		t.Error("size -2 accepted")
	}
}

func TestPutLoss(t *testing.T) {
	data := payload(40*512 + 17)
	tests := []struct {
		name string
		win  int
		cfg  tftpclienttest.Config
	}{
		{"DATA lost once each, lock-step", 1, tftpclienttest.Config{DropData: func(i, a int) bool { return a == 0 && i%3 == 0 }}},
		{"DATA lost once each, window 8", 8, tftpclienttest.Config{DropData: func(i, a int) bool { return a == 0 && i%5 == 2 }}},
		{"ACKs lost once, window 4", 4, tftpclienttest.Config{DropACK: func(i, a int) bool { return a == 0 && i%2 == 0 }}},
		{"final ACK lost twice", 4, tftpclienttest.Config{DropACK: func(i, a int) bool { return a < 2 && i == 41 }}},
		{"OACK's successor lost: DATA 1 twice", 4, tftpclienttest.Config{DropData: func(i, a int) bool { return a < 2 && i == 1 }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Writable = true
			cfg.Retransmit = 150 * time.Millisecond
			cfg.Retries = 8
			srv := tftpclienttest.NewServer(t, cfg)
			res, err := Put(ctxT(t), srv.Addr(), "f", bytes.NewReader(data), int64(len(data)),
				Options{WindowSize: tt.win, RetransmitTimeout: 100 * time.Millisecond, Retries: 8})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "upload", func() bool { return srv.Completed() == 1 })
			if got, _ := srv.Upload("f"); !bytes.Equal(got, data) {
				t.Fatalf("server got %d bytes, want %d", len(got), len(data))
			}
			if res.Retransmits == 0 || res.Packets <= 41 {
				t.Errorf("Retransmits %d, Packets %d: no loss seen", res.Retransmits, res.Packets)
			}
		})
	}
}

// TestPutRollover sends 70,001 blocks of 8 bytes: block numbers wrap from
// 65535 to 0.
func TestPutRollover(t *testing.T) {
	data := payload(70_000 * 8)
	for _, win := range []int{1, 16} {
		t.Run(fmt.Sprintf("window=%d", win), func(t *testing.T) {
			if testing.Short() && win == 1 {
				t.Skip("lock-step rollover is slow")
			}
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true, Retransmit: time.Second})
			res, err := Put(ctxT(t), srv.Addr(), "big", bytes.NewReader(data), int64(len(data)),
				Options{BlockSize: 8, WindowSize: win, RetransmitTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := srv.Upload("big"); !bytes.Equal(got, data) {
				t.Fatalf("server got %d bytes, want %d", len(got), len(data))
			}
			if res.Packets < 70_001 {
				t.Errorf("Packets = %d", res.Packets)
			}
		})
	}
}

// putScript starts a Put against a raw fake server and returns the client's
// address (from the WRQ), the WRQ and the Put's outcome.
func putScript(t *testing.T, data []byte, o Options) (c *fakeConn, wrq []byte, done <-chan error) {
	t.Helper()
	listen := fakeServer(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Put(ctxT(t), listen.LocalAddr().String(), "f", bytes.NewReader(data), int64(len(data)), o)
		errc <- err
	}()
	wrq, client := readPacket(t, listen)
	return &fakeConn{t: t, conn: fakeServer(t), client: client}, wrq, errc
}

func TestPutLockStepExactSequence(t *testing.T) {
	data := payload(2*512 + 10)
	c, wrq, done := putScript(t, data, fast(Options{RetransmitTimeout: 2 * time.Second}))
	if want := "\x00\x02f\x00octet\x00"; string(wrq) != want {
		t.Fatalf("WRQ %q, want %q", wrq, want)
	}
	c.send(wire.AppendAck(nil, 0))
	c.expectData(1, data[:512])
	c.send(wire.AppendAck(nil, 0)) // a duplicate ACK 0: ignored
	c.send(wire.AppendAck(nil, 1))
	c.expectData(2, data[512:1024])
	// Duplicate ACK 1 (Sorcerer's Apprentice): must not trigger DATA 2 again.
	c.send(wire.AppendAck(nil, 1))
	c.expectNothing(200 * time.Millisecond)
	c.send(wire.AppendAck(nil, 2))
	c.expectData(3, data[1024:])
	c.send(wire.AppendAck(nil, 3))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPutWindowGapResendsFromAck(t *testing.T) {
	data := payload(10*16 + 5) // blocks 1..11 of 16 bytes
	blk := func(i int) []byte { return data[(i-1)*16 : min(i*16, len(data))] }
	c, _, done := putScript(t, data, fast(Options{BlockSize: 16, WindowSize: 4, RetransmitTimeout: 2 * time.Second}))
	c.send([]byte("\x00\x06blksize\x0016\x00windowsize\x004\x00"))
	for i := 1; i <= 4; i++ {
		c.expectData(uint16(i), blk(i))
	}
	// Block 3 was lost: the server ACKs 2. The window restarts at 3.
	c.send(wire.AppendAck(nil, 2))
	for i := 3; i <= 6; i++ {
		c.expectData(uint16(i), blk(i))
	}
	c.send(wire.AppendAck(nil, 2)) // a repeated gap ACK: nothing new, ignored
	c.expectNothing(200 * time.Millisecond)
	c.send(wire.AppendAck(nil, 6))
	for i := 7; i <= 10; i++ {
		c.expectData(uint16(i), blk(i))
	}
	c.send(wire.AppendAck(nil, 12)) // beyond what was sent: ignored
	c.send(wire.AppendAck(nil, 10))
	c.expectData(11, blk(11))
	c.send(wire.AppendAck(nil, 11))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPutTimeoutResendsWindow(t *testing.T) {
	data := payload(3 * 8) // blocks 1..3 full, 4 empty
	c, _, done := putScript(t, data, Options{BlockSize: 8, WindowSize: 8, Retries: 1, RetransmitTimeout: 100 * time.Millisecond})
	c.send([]byte("\x00\x06blksize\x008\x00windowsize\x008\x00"))
	for range 2 { // the window, then its retransmission
		for i := 1; i <= 3; i++ {
			c.expectData(uint16(i), data[(i-1)*8:i*8])
		}
		c.expectData(4, nil)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

func TestPutOACKValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		oack string
	}{
		{"unrequested option", Options{BlockSize: 1024}, "blksize\x001024\x00tsize\x005\x00"},
		{"unknown option", Options{}, "foo\x00bar\x00"},
		{"blksize larger", Options{BlockSize: 1024}, "blksize\x001025\x00"},
		{"windowsize larger", Options{WindowSize: 4}, "windowsize\x008\x00"},
		{"timeout different", Options{Timeout: 5}, "timeout\x004\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, done := putScript(t, payload(100), fast(tt.opts))
			c.send([]byte("\x00\x06" + tt.oack))
			p := c.recv()
			if err := <-done; !errors.Is(err, ErrBadOACK) {
				t.Fatalf("err = %v, want ErrBadOACK", err)
			}
			if code, _, err := wire.ParseError(p); err != nil || code != wire.CodeOptionNegotiation {
				t.Errorf("client sent %q, want ERROR 8", p)
			}
		})
	}
}

func TestPutServerError(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{}) // not writable: ERROR 2
	_, err := Put(ctxT(t), srv.Addr(), "f", strings.NewReader("x"), 1, fast(Options{}))
	if !errors.Is(err, &Error{Code: wire.CodeAccessViolation}) {
		t.Fatalf("err = %v, want server error 2", err)
	}

	// An ERROR in the middle of the transfer.
	c, _, done := putScript(t, payload(2000), fast(Options{}))
	c.send(wire.AppendAck(nil, 0))
	c.recv()
	c.send(wire.AppendError(nil, wire.CodeDiskFull, "Disk full or allocation exceeded"))
	if err := <-done; !errors.Is(err, &Error{Code: wire.CodeDiskFull}) {
		t.Fatalf("err = %v, want server error 3", err)
	}
}

func TestPutUnknownTIDAndStrays(t *testing.T) {
	data := payload(600)
	c, _, done := putScript(t, data, fast(Options{RetransmitTimeout: 2 * time.Second}))
	intruder := &fakeConn{t: t, conn: fakeServer(t), client: c.client}
	// Before the answer: an ACK 1 or a DATA from elsewhere is no answer to a
	// WRQ and is ignored (no lock, no reply).
	intruder.send(wire.AppendAck(nil, 1))
	intruder.send(wire.AppendData(nil, 1, []byte("x")))
	c.send(wire.AppendAck(nil, 0))
	c.expectData(1, data[:512])
	// After the lock: a foreign TID gets ERROR 5 and changes nothing.
	intruder.send(wire.AppendAck(nil, 1))
	if p := intruder.recv(); !bytes.HasPrefix(p, []byte{0, 5, 0, 5}) {
		t.Fatalf("intruder got %q, want ERROR 5", p)
	}
	c.expectNothing(100 * time.Millisecond)
	c.send(wire.AppendAck(nil, 1))
	c.expectData(2, data[512:])
	c.send(wire.AppendAck(nil, 2))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPutReaderError(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true})
	r := io.MultiReader(bytes.NewReader(payload(1000)), iotest.ErrReader(errors.New("disk on fire")))
	_, err := Put(ctxT(t), srv.Addr(), "f", r, 5000, fast(Options{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	waitFor(t, "ERROR 0", func() bool { return len(srv.ClientErrors()) == 1 })
	if _, ok := srv.Upload("f"); ok {
		t.Error("a failed upload completed")
	}
}

func TestNetasciiEncoder(t *testing.T) {
	for _, in := range []string{"", "a", "\n", "\r", "\r\n", "a\nb\rc\r\n\n\r", strings.Repeat("x\r\n", 5000)} {
		want := toNetascii([]byte(in))
		for _, chunk := range []int{1, 2, 3, 512} {
			e := &netasciiEncoder{r: iotest.OneByteReader(strings.NewReader(in))}
			var got []byte
			buf := make([]byte, chunk)
			for range 100_000 {
				n, err := e.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%q in chunks of %d: got %q, want %q", in, chunk, got, want)
			}
		}
	}
}

func TestPutHotLoopDoesNotAllocatePerPacket(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Writable: true})
	small, large := payload(100), payload(2000*512)
	measure := func(data []byte) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := Put(ctxT(t), srv.Addr(), "f", bytes.NewReader(data), -1, fast(Options{WindowSize: 8})); err != nil {
				t.Error(err)
			}
		})
	}
	s, l := measure(small), measure(large)
	// The test server's copy of the upload grows logarithmically;
	// per-packet allocation in the client would add at least 2000.
	t.Logf("allocs: %v for 1 block, %v for 2001 blocks", s, l)
	if l-s > 100 {
		t.Errorf("allocations: %v for 1 block, %v for 2001 blocks", s, l)
	}
}

// fakeConn is a raw server session socket (a TID) talking to one client.
type fakeConn struct {
	t      *testing.T
	conn   *net.UDPConn
	client netip.AddrPort
}

func (c *fakeConn) send(p []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(p, c.client); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next packet from the client (5 s at most).
func (c *fakeConn) recv() []byte {
	c.t.Helper()
	p, from := readPacket(c.t, c.conn)
	if from != c.client {
		c.t.Fatalf("packet from %v, want the client %v", from, c.client)
	}
	return p
}

func (c *fakeConn) expectData(block uint16, data []byte) {
	c.t.Helper()
	if p, want := c.recv(), wire.AppendData(nil, block, data); !bytes.Equal(p, want) {
		c.t.Fatalf("got %.40q, want DATA %d (%d bytes)", p, block, len(data))
	}
}

func (c *fakeConn) expectNothing(d time.Duration) {
	c.t.Helper()
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	if n, _, err := c.conn.ReadFromUDPAddrPort(buf); err == nil {
		c.t.Fatalf("unexpected packet %.40q", buf[:n])
	}
}
