package beneath

// beneath against os.Root (the reference) and against the Go
// scheduler's expectations. Found by a review of the performance pass.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestOpenLeavesSymlinkChainsToOSRoot: os.Root follows at most 8
// symbolic links (os.rootMaxSymlinks) and refuses a longer chain with
// ELOOP; the kernel follows up to 40. beneath resolves through no link at
// all (RESOLVE_NO_SYMLINKS), so such a chain is os.Root's to refuse.
func TestOpenLeavesSymlinkChainsToOSRoot(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("file"), 0o644)
	prev := "file"
	const n = 12
	for i := range n {
		name := "l" + strconv.Itoa(i)
		if err := os.Symlink(prev, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		prev = name
	}
	root, d := testDir(t, dir)
	_, rootErr := root.Open(prev)
	f, err := d.Open(prev, os.O_RDONLY)
	if f != nil {
		f.Close()
	}
	t.Logf("os.Root.Open(%s): %v; beneath.Open: %v, %v", prev, rootErr, f != nil, err)
	if (rootErr == nil) != (err == nil) {
		t.Errorf("os.Root and beneath disagree on a %d-link chain: os.Root %v, beneath %v", n, rootErr, err)
	}
	fi, serr := d.Stat(prev, false)
	_, rootSerr := root.Stat(prev)
	t.Logf("os.Root.Stat: %v; beneath.Stat: %v, %v", rootSerr, fi != nil, serr)
	if (rootSerr == nil) != (serr == nil) && !errors.Is(serr, ErrUnsure) {
		t.Errorf("Stat: os.Root and beneath disagree on a %d-link chain: os.Root %v, beneath %v", n, rootSerr, serr)
	}
}

// TestDirOutlivesClosedRoot: once the os.Root a Dir was made from is
// closed, os.Root refuses every open (os.ErrClosed); the Dir, holding a
// descriptor of its own, keeps opening files, as OpenDir and
// gateway.FileServer document.
func TestDirOutlivesClosedRoot(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("file"), 0o644)
	root, d := testDir(t, dir)
	root.Close()
	_, rootErr := root.Open("file")
	f, err := d.Open("file", os.O_RDONLY)
	if f != nil {
		f.Close()
	}
	if rootErr == nil || err != nil {
		t.Fatalf("after root.Close: os.Root %v (want an error); Dir %v (want the file)", rootErr, err)
	}
}

const fanHelperEnv = "BENEATH_TEST_FANOTIFY_HELPER"

// TestOpenThatWaitsHoldsNoP: an open can wait even when the kernel's
// caches resolve its path (a fanotify permission event: fapolicyd,
// on-access virus scanners; FUSE's FUSE_OPEN; NFSv4's OPEN), and a raw
// system call keeps its P: with GOMAXPROCS=1 nothing else in the process
// would run until it returned (and a stop-the-world waits for it). So
// Open's only raw call is an O_PATH lookup, for which no open method,
// security hook or permission event runs, and the open itself goes
// through the scheduler. A helper process answers the permission event
// after a second; a goroutine that ticks every 10 ms measures the longest
// gap. (Before the fix the raw open stood the process still for 1.009 s.)
func TestOpenThatWaitsHoldsNoP(t *testing.T) {
	if os.Getenv(fanHelperEnv) != "" {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("fanotify permission events need CAP_SYS_ADMIN")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("file"), 0o644)
	root, d := testDir(t, dir)
	if f, err := d.Open("file", os.O_RDONLY); err != nil {
		t.Skip("beneath cannot open here:", err)
	} else {
		f.Close()
	}

	for _, via := range []string{"os.Root", "beneath cached (raw)", "beneath uncached"} {
		t.Run(via, func(t *testing.T) {
			gap := measureOpen(t, file, func() error {
				switch via {
				case "os.Root":
					f, err := root.OpenFile("file", os.O_RDONLY|syscall.O_NONBLOCK, 0)
					if err == nil {
						f.Close()
					}
					return err
				default:
					old := noCached.Load()
					noCached.Store(via == "beneath uncached")
					defer noCached.Store(old)
					f, err := d.Open("file", os.O_RDONLY|syscall.O_NONBLOCK)
					if err == nil {
						f.Close()
					}
					return err
				}
			})
			t.Logf("%s: longest gap of a 10 ms ticker while the open waited 1 s: %v", via, gap)
			if gap > 500*time.Millisecond {
				t.Errorf("%s: the process stood still for %v while one open waited for a fanotify answer (GOMAXPROCS=1)", via, gap)
			}
		})
	}
}

func measureOpen(t *testing.T, file string, open func() error) time.Duration {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFanotifyHelper$", "-test.v")
	cmd.Env = append(os.Environ(), fanHelperEnv+"="+file)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	br := bufio.NewReader(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal("helper:", err)
		}
		if line == "READY\n" {
			break
		}
		if len(line) > 5 && line[:5] == "SKIP " {
			t.Skip(line)
		}
	}
	go io.Copy(io.Discard, br)

	if os.Getenv("BENEATH_TEST_STW") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	} else {
		// Every P but the blocked one is free: a collection's
		// stop-the-world still waits for the raw call.
		go func() { time.Sleep(300 * time.Millisecond); runtime.GC() }()
	}
	done := make(chan error, 1)
	stop := make(chan struct{})
	gapc := make(chan time.Duration, 1)
	go func() {
		var gap time.Duration
		last := time.Now()
		for {
			select {
			case <-stop:
				gapc <- gap
				return
			default:
			}
			time.Sleep(10 * time.Millisecond)
			now := time.Now()
			gap = max(gap, now.Sub(last))
			last = now
		}
	}()
	time.Sleep(50 * time.Millisecond)
	go func() { done <- open() }()
	select {
	case err := <-done:
		if err != nil {
			t.Error("open:", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("open did not return")
	}
	time.Sleep(30 * time.Millisecond)
	close(stop)
	return <-gapc
}

// TestFanotifyHelper is the helper process: it holds every open of
// the file for a second, then allows it.
func TestFanotifyHelper(t *testing.T) {
	file := os.Getenv(fanHelperEnv)
	if file == "" {
		t.Skip("helper only")
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		fmt.Println("SKIP fanotify_init:", err)
		return
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, file); err != nil {
		fmt.Println("SKIP fanotify_mark:", err)
		return
	}
	fmt.Println("READY")
	buf := make([]byte, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return
		}
		for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			if m.Mask&unix.FAN_OPEN_PERM != 0 {
				time.Sleep(time.Second)
				var r [8]byte
				binary.NativeEndian.PutUint32(r[0:], uint32(m.Fd))
				binary.NativeEndian.PutUint32(r[4:], unix.FAN_ALLOW)
				unix.Write(fd, r[:])
			}
			if m.Fd >= 0 {
				unix.Close(int(m.Fd))
			}
			off += int(m.Event_len)
		}
	}
}
