package tftpclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tftpgw/tftpgw/internal/tftpclient/tftpclienttest"
	"github.com/tftpgw/tftpgw/internal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fast are options that make failures quick in tests.
func fast(o Options) Options {
	if o.RetransmitTimeout == 0 {
		o.RetransmitTimeout = 300 * time.Millisecond
	}
	return o
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond for up to 2 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestGetLockStepWithoutOptions(t *testing.T) {
	for _, size := range []int{0, 100, 512, 1024, 3*512 + 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := payload(size)
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
				Files: map[string][]byte{"f": data}, NoOptions: true,
				Retransmit: 2 * time.Second, // exact ACK sequence: no spurious timeouts
			})
			var got bytes.Buffer
			// Options are requested but ignored: the client falls back to 512/1.
			res, err := Get(ctxT(t), srv.Addr(), "f", &got, fast(Options{BlockSize: 1024, WindowSize: 8, TSize: true}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("content mismatch: got %d bytes, want %d", got.Len(), size)
			}
			nblocks := size/512 + 1
			var want []uint16
			for i := 1; i <= nblocks; i++ {
				want = append(want, uint16(i))
			}
			waitFor(t, "final ACK", func() bool { return srv.Completed() == 1 })
			if acks := srv.ACKs(); !reflect.DeepEqual(acks, want) {
				t.Errorf("ACKs = %v, want %v", acks, want)
			}
			if res.Negotiated != nil || res.TSize != -1 {
				t.Errorf("Negotiated = %v, TSize = %d; want nil, -1", res.Negotiated, res.TSize)
			}
			if res.Size != int64(size) || res.Packets != int64(nblocks) || res.Duplicates != 0 {
				t.Errorf("Size/Packets/Duplicates = %d/%d/%d", res.Size, res.Packets, res.Duplicates)
			}
			if want := srv.Addr(); res.ServerAddr.Addr().String() != "127.0.0.1" || res.ServerAddr.String() == want {
				t.Errorf("ServerAddr = %v, want a session port distinct from %s", res.ServerAddr, want)
			}
		})
	}
}

func TestGetNegotiatedMatrix(t *testing.T) {
	for _, blk := range []int{0, 8, 512, 1428} {
		for _, win := range []int{0, 1, 4, 16} {
			for _, mode := range []string{"octet", "netascii"} {
				t.Run(fmt.Sprintf("blksize=%d/window=%d/%s", blk, win, mode), func(t *testing.T) {
					eb := blk
					if eb == 0 {
						eb = 512
					}
					for _, size := range []int{0, 1, eb, 5 * eb, 7*eb + 3} {
						data := payload(size)
						if mode == "netascii" {
							data = bytes.Repeat([]byte("ab\r\n\r\x00"), size/6+1)[:size]
						}
						srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"dir/f": data}})
						var got bytes.Buffer
						res, err := Get(ctxT(t), srv.Addr(), "dir/f", &got, fast(Options{
							BlockSize: blk, WindowSize: win, TSize: true, Timeout: 3, Mode: mode,
						}))
						if err != nil {
							t.Fatalf("size %d: %v", size, err)
						}
						if !bytes.Equal(got.Bytes(), data) {
							t.Fatalf("size %d: content mismatch", size)
						}
						if res.TSize != int64(size) {
							t.Errorf("size %d: TSize = %d", size, res.TSize)
						}
						if res.Negotiated["timeout"] != "3" {
							t.Errorf("Negotiated = %v", res.Negotiated)
						}
						if res.TimeToFirst <= 0 || res.Duration < res.TimeToFirst {
							t.Errorf("TimeToFirst %v, Duration %v", res.TimeToFirst, res.Duration)
						}
					}
				})
			}
		}
	}
}

func TestGetWindowGapAcksOnce(t *testing.T) {
	data := payload(10*512 + 7) // 11 blocks
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
		Files:      map[string][]byte{"f": data},
		Retransmit: 2 * time.Second, // exact ACK sequence: no spurious timeouts
		// Lose block 2 the first time it is sent.
		DropData: func(index, attempt int) bool { return index == 2 && attempt == 0 },
	})
	var got bytes.Buffer
	res, err := Get(ctxT(t), srv.Addr(), "f", &got, fast(Options{WindowSize: 4}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("content mismatch")
	}
	waitFor(t, "final ACK", func() bool { return srv.Completed() == 1 })
	// OACK -> ACK 0; window 1..4 without 2 -> ACK 1 once (3 and 4 are
	// counted as duplicates); window 2..5 -> ACK 5; 6..9 -> ACK 9; 10, 11
	// (short) -> ACK 11.
	if want, acks := []uint16{0, 1, 5, 9, 11}, srv.ACKs(); !reflect.DeepEqual(acks, want) {
		t.Errorf("ACKs = %v, want %v", acks, want)
	}
	if res.Duplicates != 2 || res.Packets != 13 {
		t.Errorf("Duplicates = %d, Packets = %d; want 2, 13", res.Duplicates, res.Packets)
	}
}

func TestGetGapAckedOncePerGap(t *testing.T) {
	data := payload(8*512 + 1) // 9 blocks
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
		Files:      map[string][]byte{"f": data},
		Retransmit: 300 * time.Millisecond,
		// Block 5 is lost twice. The window 5..8 arrives as 6,7,8: the
		// client ACKs 4 once. The server restarts at 5 and loses it again:
		// 6,7,8 arrive again and the client stays quiet (still the same
		// gap). The server's timer resends 5..8, which completes the window.
		DropData: func(index, attempt int) bool { return index == 5 && attempt < 2 },
	})
	var got bytes.Buffer
	res, err := Get(ctxT(t), srv.Addr(), "f", &got, Options{WindowSize: 4, RetransmitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("content mismatch")
	}
	waitFor(t, "final ACK", func() bool { return srv.Completed() == 1 })
	if want, acks := []uint16{0, 4, 4, 8, 9}, srv.ACKs(); !reflect.DeepEqual(acks, want) {
		t.Errorf("ACKs = %v, want %v", acks, want)
	}
	if res.Duplicates != 6 {
		t.Errorf("Duplicates = %d, want 6", res.Duplicates)
	}
}

func TestGetRollover(t *testing.T) {
	data := payload(600_000) // 75001 blocks of 8 bytes: wraps past 65535 to 0
	for _, win := range []int{1, 16} {
		t.Run(fmt.Sprintf("window=%d", win), func(t *testing.T) {
			if testing.Short() && win == 1 {
				t.Skip("lock-step rollover is slow")
			}
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"big": data}})
			var got bytes.Buffer
			res, err := Get(ctxT(t), srv.Addr(), "big", &got, fast(Options{BlockSize: 8, WindowSize: win, TSize: true, RetransmitTimeout: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("content mismatch: got %d bytes", got.Len())
			}
			if res.Packets < 75001 {
				t.Errorf("Packets = %d", res.Packets)
			}
			waitFor(t, "final ACK", func() bool { return srv.Completed() == 1 })
			acks := srv.ACKs()
			if last, want := acks[len(acks)-1], uint16(75001%65536); last != want {
				t.Errorf("final ACK %d, want %d", last, want)
			}
		})
	}
}

func TestGetOACKValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		oack [][2]string
	}{
		{"unrequested option", Options{BlockSize: 1024}, [][2]string{{"blksize", "1024"}, {"tsize", "5"}}},
		{"unrequested unknown option", Options{}, [][2]string{{"foo", "bar"}}},
		{"blksize larger", Options{BlockSize: 1024}, [][2]string{{"blksize", "1025"}}},
		{"blksize too small", Options{BlockSize: 1024}, [][2]string{{"blksize", "7"}}},
		{"blksize not a number", Options{BlockSize: 1024}, [][2]string{{"blksize", "x"}}},
		{"windowsize larger", Options{WindowSize: 4}, [][2]string{{"windowsize", "8"}}},
		{"windowsize zero", Options{WindowSize: 4}, [][2]string{{"windowsize", "0"}}},
		{"timeout different", Options{Timeout: 5}, [][2]string{{"timeout", "4"}}},
		{"timeout reformatted", Options{Timeout: 5}, [][2]string{{"timeout", "05"}}},
		{"tsize negative", Options{TSize: true}, [][2]string{{"tsize", "-1"}}},
		{"repeated option", Options{BlockSize: 1024}, [][2]string{{"blksize", "512"}, {"blksize", "512"}}},
		{"empty OACK", Options{BlockSize: 1024}, [][2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.oack) == 0 {
				// The test server sends no OACK for an empty list, so send
				// an empty one by hand.
				testEmptyOACK(t, tt.opts)
				return
			}
			srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
				Files: map[string][]byte{"f": payload(100)},
				OACK:  func([][2]string) [][2]string { return tt.oack },
			})
			_, err := Get(ctxT(t), srv.Addr(), "f", &bytes.Buffer{}, fast(tt.opts))
			if !errors.Is(err, ErrBadOACK) {
				t.Fatalf("err = %v, want ErrBadOACK", err)
			}
			waitFor(t, "ERROR 8", func() bool { return len(srv.ClientErrors()) == 1 })
			if e := srv.ClientErrors()[0]; e.Code != wire.CodeOptionNegotiation {
				t.Errorf("client sent ERROR %d %q, want code 8", e.Code, e.Message)
			}
		})
	}
}

// fakeServer is a raw socket standing in for a server, driven by the test.
func fakeServer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readPacket(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("fake server read: %v", err)
	}
	return buf[:n], from
}

func testEmptyOACK(t *testing.T, o Options) {
	c := fakeServer(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Get(ctxT(t), c.LocalAddr().String(), "f", &bytes.Buffer{}, fast(o))
		errc <- err
	}()
	_, client := readPacket(t, c)
	if _, err := c.WriteToUDPAddrPort(wire.AppendOACK(nil, nil), client); err != nil {
		t.Fatal(err)
	}
	p, _ := readPacket(t, c)
	if err := <-errc; !errors.Is(err, ErrBadOACK) {
		t.Fatalf("err = %v, want ErrBadOACK", err)
	}
	if code, _, err := wire.ParseError(p); err != nil || code != wire.CodeOptionNegotiation {
		t.Errorf("client sent %x, want ERROR 8", p)
	}
}

func TestGetServerError(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{})
	_, err := Get(ctxT(t), srv.Addr(), "missing", &bytes.Buffer{}, fast(Options{BlockSize: 1024}))
	var te *Error
	if !errors.As(err, &te) || te.Code != wire.CodeFileNotFound || te.Message != "File not found" {
		t.Fatalf("err = %#v, want *Error{1, File not found}", err)
	}
	if !errors.Is(err, &Error{Code: wire.CodeFileNotFound}) || errors.Is(err, &Error{Code: wire.CodeAccessViolation}) {
		t.Error("errors.Is by code does not work")
	}
	if len(srv.ClientErrors()) != 0 {
		t.Error("client answered an ERROR with an ERROR")
	}
}

func TestGetUnknownTID(t *testing.T) {
	data := payload(6*512 + 10)
	intruder := fakeServer(t)
	reply := make(chan []byte, 1)
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
		Files: map[string][]byte{"f": data},
		AfterData: func(index int, client netip.AddrPort) {
			if index != 3 {
				return
			}
			// A stray DATA 4 with bogus content from another port.
			pkt := wire.AppendData(nil, 4, bytes.Repeat([]byte{'X'}, 512))
			if _, err := intruder.WriteToUDPAddrPort(pkt, client); err != nil {
				reply <- nil
				return
			}
			buf := make([]byte, 600)
			_ = intruder.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := intruder.ReadFromUDPAddrPort(buf)
			if err != nil {
				reply <- nil
				return
			}
			reply <- buf[:n]
		},
	})
	var got bytes.Buffer
	res, err := Get(ctxT(t), srv.Addr(), "f", &got, fast(Options{WindowSize: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("content mismatch: the intruder's DATA was accepted")
	}
	p := <-reply
	if code, _, err := wire.ParseError(p); err != nil || code != wire.CodeUnknownTID {
		t.Fatalf("intruder got %q, want ERROR 5", p)
	}
	if res.Duplicates != 0 {
		t.Errorf("Duplicates = %d: the foreign packet was counted", res.Duplicates)
	}
}

func TestGetTimeoutRetries(t *testing.T) {
	t.Run("RRQ", func(t *testing.T) {
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Silent: true})
		start := time.Now()
		_, err := Get(ctxT(t), srv.Addr(), "f", &bytes.Buffer{}, Options{Retries: 3, RetransmitTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		waitFor(t, "4 RRQs", func() bool { return srv.RRQs() == 4 })
		time.Sleep(60 * time.Millisecond)
		if n := srv.RRQs(); n != 4 {
			t.Errorf("server got %d RRQs, want 1 + 3 retransmissions", n)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("gave up after %v, want >= 4 x 50ms", d)
		}
	})
	t.Run("ACK 0", func(t *testing.T) {
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
			Files: map[string][]byte{"f": payload(10)}, StopAfterOACK: true,
		})
		_, err := Get(ctxT(t), srv.Addr(), "f", &bytes.Buffer{}, Options{TSize: true, Retries: 2, RetransmitTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		waitFor(t, "3 ACKs", func() bool { return len(srv.ACKs()) == 3 })
		if acks := srv.ACKs(); !reflect.DeepEqual(acks, []uint16{0, 0, 0}) {
			t.Errorf("ACKs = %v, want ACK 0 plus 2 retransmissions", acks)
		}
	})
	t.Run("no retries", func(t *testing.T) {
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Silent: true})
		_, err := Get(ctxT(t), srv.Addr(), "f", &bytes.Buffer{}, Options{Retries: -1, RetransmitTimeout: 50 * time.Millisecond})
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		time.Sleep(60 * time.Millisecond)
		if n := srv.RRQs(); n != 1 {
			t.Errorf("server got %d RRQs, want 1", n)
		}
	})
	t.Run("server recovers", func(t *testing.T) {
		// Every block is lost once: both sides' timers must recover.
		data := payload(5*512 + 1)
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
			Files:    map[string][]byte{"f": data},
			DropData: func(index, attempt int) bool { return attempt == 0 },
		})
		var got bytes.Buffer
		if _, err := Get(ctxT(t), srv.Addr(), "f", &got, Options{RetransmitTimeout: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatal("content mismatch")
		}
	})
}

func TestGetCancel(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
		Files: map[string][]byte{"f": payload(10)}, StopAfterOACK: true,
	})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Get(ctx, srv.Addr(), "f", &bytes.Buffer{}, Options{TSize: true, RetransmitTimeout: 10 * time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	waitFor(t, "ERROR 0", func() bool { return len(srv.ClientErrors()) == 1 })
	if e := srv.ClientErrors()[0]; e.Code != 0 || e.Message != "cancelled" {
		t.Errorf("client sent %+v, want ERROR 0 cancelled", e)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	if w.n == 2 {
		return 0, errors.New("disk on fire")
	}
	return len(p), nil
}

func TestGetWriterError(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"f": payload(5000)}})
	_, err := Get(ctxT(t), srv.Addr(), "f", &failWriter{}, fast(Options{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	waitFor(t, "ERROR 0", func() bool { return len(srv.ClientErrors()) == 1 })
}

func TestGetRejectsOversizedData(t *testing.T) {
	c := fakeServer(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Get(ctxT(t), c.LocalAddr().String(), "f", &bytes.Buffer{}, fast(Options{}))
		errc <- err
	}()
	_, client := readPacket(t, c)
	pkt := wire.AppendData(nil, 1, make([]byte, 513))
	if _, err := c.WriteToUDPAddrPort(pkt, client); err != nil {
		t.Fatal(err)
	}
	p, _ := readPacket(t, c)
	if err := <-errc; !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
	if code, _, err := wire.ParseError(p); err != nil || code != wire.CodeIllegalOperation {
		t.Errorf("client sent %x, want ERROR 4", p)
	}
}

func TestGetDuplicateOACK(t *testing.T) {
	// The server resends the OACK (our ACK 0 "was lost"): the client
	// answers with ACK 0 again and the transfer proceeds.
	c := fakeServer(t)
	errc := make(chan error, 1)
	var got bytes.Buffer
	go func() {
		_, err := Get(ctxT(t), c.LocalAddr().String(), "f", &got, fast(Options{BlockSize: 16}))
		errc <- err
	}()
	_, client := readPacket(t, c)
	oack := []byte("\x00\x06blksize\x0016\x00")
	for i := 0; i < 2; i++ {
		if _, err := c.WriteToUDPAddrPort(oack, client); err != nil {
			t.Fatal(err)
		}
		if p, _ := readPacket(t, c); !bytes.Equal(p, wire.AppendAck(nil, 0)) {
			t.Fatalf("got %x, want ACK 0", p)
		}
	}
	if _, err := c.WriteToUDPAddrPort([]byte("\x00\x03\x00\x01hello"), client); err != nil {
		t.Fatal(err)
	}
	if p, _ := readPacket(t, c); !bytes.Equal(p, wire.AppendAck(nil, 1)) {
		t.Fatalf("got %x, want ACK 1", p)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got.String() != "hello" {
		t.Errorf("got %q", got.String())
	}
}

func TestProbe(t *testing.T) {
	data := payload(12345)
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"f": data}})
	n, err := Probe(ctxT(t), srv.Addr(), "f", fast(Options{BlockSize: 1468}))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) {
		t.Errorf("tsize = %d, want %d", n, len(data))
	}
	waitFor(t, "ERROR 8", func() bool { return len(srv.ClientErrors()) == 1 })
	if e := srv.ClientErrors()[0]; e.Code != 8 || e.Message != "User aborted the transfer" {
		t.Errorf("client sent %+v", e)
	}
	if opts := srv.Options()[0]; !reflect.DeepEqual(opts, [][2]string{{"blksize", "1468"}, {"tsize", "0"}}) {
		t.Errorf("RRQ options = %v", opts)
	}

	t.Run("no OACK", func(t *testing.T) {
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"f": data}, NoOptions: true})
		if _, err := Probe(ctxT(t), srv.Addr(), "f", fast(Options{})); !errors.Is(err, ErrNoTSize) {
			t.Fatalf("err = %v, want ErrNoTSize", err)
		}
		waitFor(t, "ERROR 8", func() bool { return len(srv.ClientErrors()) == 1 })
	})
	t.Run("missing", func(t *testing.T) {
		srv := tftpclienttest.NewServer(t, tftpclienttest.Config{})
		_, err := Probe(ctxT(t), srv.Addr(), "nope", fast(Options{}))
		if !errors.Is(err, &Error{Code: wire.CodeFileNotFound}) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOptionValidation(t *testing.T) {
	for _, o := range []Options{
		{BlockSize: 7}, {BlockSize: 65465}, {WindowSize: -1}, {WindowSize: 65536},
		{Timeout: 256}, {Mode: "mail"}, {ExtraOptions: [][2]string{{"a\x00", "b"}}},
	} {
		if _, err := Get(ctxT(t), "127.0.0.1:9", "f", &bytes.Buffer{}, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := Get(ctxT(t), "no-port", "f", &bytes.Buffer{}, Options{}); err == nil {
		t.Error("address without port accepted")
	}
}

func TestExtraOptionsSentAndValidated(t *testing.T) {
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{
		Files: map[string][]byte{"f": payload(3000)},
		OACK: func(req [][2]string) [][2]string {
			return [][2]string{{"x-foo", "1"}, {"blksize", "1000"}}
		},
	})
	var got bytes.Buffer
	res, err := Get(ctxT(t), srv.Addr(), "f", &got, fast(Options{ExtraOptions: [][2]string{{"X-Foo", "1"}, {"blksize", "1000"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Negotiated["x-foo"] != "1" || got.Len() != 3000 || res.Packets != 4 {
		t.Errorf("Negotiated %v, %d bytes, %d packets", res.Negotiated, got.Len(), res.Packets)
	}
	if opts := srv.Options()[0]; !reflect.DeepEqual(opts, [][2]string{{"x-foo", "1"}, {"blksize", "1000"}}) {
		t.Errorf("RRQ options = %v", opts)
	}
}

func TestGetHotLoopDoesNotAllocatePerPacket(t *testing.T) {
	small, large := payload(100), payload(2000*512)
	srv := tftpclienttest.NewServer(t, tftpclienttest.Config{Files: map[string][]byte{"s": small, "l": large}})
	measure := func(name string) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := Get(ctxT(t), srv.Addr(), name, discard{}, fast(Options{WindowSize: 8})); err != nil {
				t.Error(err)
			}
		})
	}
	s, l := measure("s"), measure("l")
	// The test server's bookkeeping grows logarithmically; per-packet
	// allocation in the client would add at least 2000.
	t.Logf("allocs: %v for 1 block, %v for 2001 blocks", s, l)
	if l-s > 100 {
		t.Errorf("allocations: %v for 1 block, %v for 2001 blocks", s, l)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// FuzzNegotiate feeds the client's OACK check whatever a server may send
// to a request with every option: it must not panic, an OACK it accepts
// answers only what was requested, once each, within the RFCs' limits and
// never above the request, and its options encode back to the packet but
// for the case of their names.
func FuzzNegotiate(f *testing.F) {
	f.Add([]byte("\x00\x06blksize\x001024\x00tsize\x00123\x00"))
	f.Add([]byte("\x00\x06BlkSize\x001468\x00WINDOWSIZE\x0016\x00timeout\x005\x00x-vendor\x00on\x00"))
	f.Add([]byte("\x00\x06blksize\x00512\x00BLKSIZE\x00512\x00"))
	f.Add([]byte("\x00\x06"))
	f.Add([]byte("\x00\x06a\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) < 2 {
			return // next never returns less
		}
		var tr transfer
		if _, err := tr.request(Options{BlockSize: 1468, WindowSize: 16, Timeout: 5, TSize: true,
			ExtraOptions: [][2]string{{"X-Vendor", "on"}}}, 0); err != nil {
			t.Fatal(err)
		}
		m, err := tr.negotiate(p)
		if err != nil {
			return
		}
		opts, err := wire.ParseOACK(p)
		if err != nil || len(opts) != len(m) {
			t.Fatalf("accepted %q: %v, %v", p, m, err)
		}
		for name, value := range m {
			if _, ok := tr.requested[name]; !ok {
				t.Fatalf("accepted %q: %q was not requested", p, name)
			}
			n, err := strconv.ParseInt(value, 10, 64)
			switch {
			case name == "blksize" && (err != nil || n < MinBlockSize || n > 1468),
				name == "windowsize" && (err != nil || n < 1 || n > 16),
				name == "timeout" && value != "5",
				name == "tsize" && (err != nil || n < 0):
				t.Fatalf("accepted %q: %s %q", p, name, value)
			}
		}
		if enc := wire.AppendOACK(nil, opts); !bytes.EqualFold(enc, p) {
			t.Fatalf("round trip %q -> %q", p, enc)
		}
	})
}

// TestGetIgnoresStrayFirstPackets is a regression test: the first reply
// fixes the server's TID (RFC 1350 section 4), and a stray packet that
// reached a fresh socket first, a retransmitted final DATA of an earlier
// transfer whose client had the same port, made the client lock onto
// that transfer's session and fail ("DATA 3 has 1160 bytes, block size
// is 512"; seen about once in three bursts of 10,000 transfers). Only an
// OACK, DATA 1 or an ERROR can answer a request.
func TestGetIgnoresStrayFirstPackets(t *testing.T) {
	listen, intruder, session := fakeServer(t), fakeServer(t), fakeServer(t)
	data := payload(100)
	type result struct {
		res Result
		err error
		got []byte
	}
	done := make(chan result, 1)
	go func() {
		var got bytes.Buffer
		res, err := Get(ctxT(t), listen.LocalAddr().String(), "f", &got, fast(Options{}))
		done <- result{res, err, got.Bytes()}
	}()
	_, client := readPacket(t, listen) // the RRQ
	for _, stray := range [][]byte{
		wire.AppendData(nil, 3, payload(1160)), // an old transfer's final block
		wire.AppendAck(nil, 1),
		{0, byte(wire.OpDATA), 0},
	} {
		if _, err := intruder.WriteToUDPAddrPort(stray, client); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := session.WriteToUDPAddrPort(wire.AppendData(nil, 1, data), client); err != nil {
		t.Fatal(err)
	}
	if p, from := readPacket(t, session); from != client || !bytes.Equal(p, wire.AppendAck(nil, 1)) {
		t.Errorf("session got %q from %v, want ACK 1 from %v", p, from, client)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !bytes.Equal(r.got, data) {
		t.Errorf("content: got %d bytes, want the session's %d", len(r.got), len(data))
	}
	if want := session.LocalAddr().(*net.UDPAddr).AddrPort(); r.res.ServerAddr != want {
		t.Errorf("ServerAddr %v, want the session's %v", r.res.ServerAddr, want)
	}
}

// TestGetIgnoresStrayLongDATA1 (found by a review helper): a DATA 1 of
// more than 512 bytes before the OACK of a request with a blksize is the
// final block of an earlier one-block transfer that negotiated one, not
// an answer: a server that ignores the options sends 512-byte blocks.
func TestGetIgnoresStrayLongDATA1(t *testing.T) {
	listen, intruder, session := fakeServer(t), fakeServer(t), fakeServer(t)
	data := payload(100)
	type result struct {
		err error
		got []byte
	}
	done := make(chan result, 1)
	go func() {
		var got bytes.Buffer
		_, err := Get(ctxT(t), listen.LocalAddr().String(), "f", &got, fast(Options{BlockSize: 1468}))
		done <- result{err, got.Bytes()}
	}()
	_, client := readPacket(t, listen) // the RRQ
	if _, err := intruder.WriteToUDPAddrPort(wire.AppendData(nil, 1, payload(1000)), client); err != nil {
		t.Fatal(err)
	}
	if _, err := session.WriteToUDPAddrPort([]byte("\x00\x06blksize\x001468\x00"), client); err != nil {
		t.Fatal(err)
	}
	if p, _ := readPacket(t, session); !bytes.Equal(p, wire.AppendAck(nil, 0)) {
		t.Fatalf("session got %q, want ACK 0", p)
	}
	if _, err := session.WriteToUDPAddrPort(wire.AppendData(nil, 1, data), client); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || !bytes.Equal(r.got, data) {
		t.Errorf("%v, %d bytes; want the session's %d", r.err, len(r.got), len(data))
	}
}
