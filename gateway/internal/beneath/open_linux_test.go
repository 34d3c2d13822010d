package beneath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// testDir opens dir as an os.Root and a Dir of it, both closed when the
// test ends.
func testDir(t *testing.T, dir string) (*os.Root, *Dir) {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	d := OpenDir(root)
	if d == nil {
		t.Fatal("OpenDir: nil")
	}
	t.Cleanup(func() { d.Close() })
	return root, d
}

// TestOpen: Open decides a file below the directory, or its absence, in
// one openat2, and leaves everything that could leave the directory, or
// that it is unsure of, to os.Root (ErrUnsure).
func TestOpen(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxelinux.cfg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), []byte("default"), 0o644)
	os.WriteFile(filepath.Join(dir, "file"), []byte("file"), 0o644)
	for name, target := range map[string]string{
		"inside":   "pxelinux.cfg/default",         // relative, below the directory
		"absolute": filepath.Join(dir, "file"),     // absolute: refused even though it points inside
		"escape":   "../" + filepath.Base(outside), // leaves the directory
		"dangling": "pxelinux.cfg/nothing",         // below, to nothing
		"magic":    "/proc/self/root/etc/passwd",   // through /proc's magic links
		"loop":     "loop",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	_, d := testDir(t, dir)
	if _, err := d.Open("file", os.O_RDONLY); errors.Is(err, ErrUnsure) {
		t.Skip("openat2 is not available here (kernel before 5.6, or a sandbox): os.Root decides every open")
	}

	// Both ways: from the kernel's caches alone (the paths were just
	// made, so they are there), and the normal openat2 that Open falls
	// back to (when the caches cannot decide, or before Linux 5.12).
	defer noCached.Store(noCached.Load())
	for _, cached := range []bool{true, false} {
		noCached.Store(!cached)
		t.Run(map[bool]string{true: "cached", false: "uncached"}[cached], func(t *testing.T) { testOpen(t, d, outside) })
	}
}

func testOpen(t *testing.T, d *Dir, outside string) {
	for _, tc := range []struct {
		name, path string
		want       string // the file's bytes; "" for an error
		missing    bool   // an *os.PathError wrapping ENOENT
	}{
		{"file at the top", "file", "file", false},
		{"file in a directory", "pxelinux.cfg/default", "default", false},
		{"missing at the top", "nothing", "", true},
		{"missing in a directory", "pxelinux.cfg/01-52-54-00-00-00-01", "", true},
		{"missing directory", "nodir/file", "", true},
		// Every symbolic link is left to os.Root, whose rules for them
		// are not the kernel's (at most 8 in a row).
		{"link below the directory", "inside", "", false},
		{"dangling link below the directory", "dangling", "", false},
		{"absolute link", "absolute", "", false},
		{"link leaving the directory", "escape/secret", "", false},
		{"magic link", "magic", "", false},
		{"link loop", "loop", "", false},
		{"file as a directory", "file/x", "", false},
		{"dot-dot", "../" + filepath.Base(outside) + "/secret", "", false},
		{"absolute path", filepath.Join(outside, "secret"), "", false},
		// os.Root has its own answers for these (found by the examples'
		// contract test: an empty path must stay an access violation).
		{"empty", "", "", false},
		{"unclean", "pxelinux.cfg//default", "", false},
		{"trailing slash", "file/", "", false},
		{"dot-dot inside", "pxelinux.cfg/../file", "", false},
		{"NUL", "fi\x00le", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := d.Open(tc.path, os.O_RDONLY)
			switch {
			case tc.want != "":
				if err != nil {
					t.Fatalf("Open(%q): %v", tc.path, err)
				}
				defer f.Close()
				b, _ := io.ReadAll(f)
				if string(b) != tc.want {
					t.Fatalf("Open(%q) read %q, want %q", tc.path, b, tc.want)
				}
			case tc.missing:
				var pe *os.PathError
				if f != nil || !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) || pe.Path != tc.path {
					t.Fatalf("Open(%q): %v (%T), want an *os.PathError for ENOENT", tc.path, err, err)
				}
			default:
				if f != nil || !errors.Is(err, ErrUnsure) {
					t.Fatalf("Open(%q): %v, %v; want ErrUnsure (os.Root decides)", tc.path, f, err)
				}
			}
		})
	}
}

// TestNilDir: without a directory every Open is ErrUnsure.
func TestNilDir(t *testing.T) {
	var d *Dir
	if _, err := d.Open("file", os.O_RDONLY); !errors.Is(err, ErrUnsure) {
		t.Fatalf("nil Dir: %v, want ErrUnsure", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStat: Stat tells what os.Root's Lstat and Stat tell (name, size,
// mode, time, inode) for files, directories and links below the
// directory, ENOENT for what is missing, and leaves what leaves the
// directory to os.Root (ErrUnsure).
func TestStat(t *testing.T) {
	outside := t.TempDir()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxelinux.cfg"), 0o750)
	os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), []byte("default"), 0o640)
	os.Symlink("pxelinux.cfg/default", filepath.Join(dir, "inside"))
	os.Symlink(outside, filepath.Join(dir, "escape"))
	os.Chmod(filepath.Join(dir, "pxelinux.cfg"), 0o2750|os.ModeSetgid)
	root, d := testDir(t, dir)
	if _, err := d.Stat("pxelinux.cfg", true); errors.Is(err, ErrUnsure) {
		t.Skip("openat2 with RESOLVE_CACHED is not available here: os.Root decides every stat")
	}
	same := func(t *testing.T, got, want os.FileInfo) {
		t.Helper()
		g, w := got.Sys().(*syscall.Stat_t), want.Sys().(*syscall.Stat_t)
		if got.Name() != want.Name() || got.Size() != want.Size() || got.Mode() != want.Mode() || !got.ModTime().Equal(want.ModTime()) ||
			got.IsDir() != want.IsDir() || g.Ino != w.Ino || g.Dev != w.Dev || g.Ctim != w.Ctim {
			t.Fatalf("Stat: %s %d %v %v dir=%v ino %d; os.Root: %s %d %v %v dir=%v ino %d",
				got.Name(), got.Size(), got.Mode(), got.ModTime(), got.IsDir(), g.Ino, want.Name(), want.Size(), want.Mode(), want.ModTime(), want.IsDir(), w.Ino)
		}
	}
	for _, name := range []string{"pxelinux.cfg", "pxelinux.cfg/default", "inside"} {
		for _, nofollow := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s nofollow=%v", name, nofollow), func(t *testing.T) {
				if name == "inside" && !nofollow {
					// Following a link is os.Root's to do.
					if _, err := d.Stat(name, nofollow); !errors.Is(err, ErrUnsure) {
						t.Fatalf("Stat through a link: %v, want ErrUnsure", err)
					}
					return
				}
				got, err := d.Stat(name, nofollow)
				if err != nil {
					t.Fatal(err)
				}
				want, err := root.Stat(name)
				if nofollow {
					want, err = root.Lstat(name)
				}
				if err != nil {
					t.Fatal(err)
				}
				same(t, got, want)
			})
		}
	}
	for _, name := range []string{"nothing", "pxelinux.cfg/nothing", "nodir/nothing"} {
		root.Lstat(name) // the kernel caches the name's absence (a lookup not yet made cannot be decided from the caches: ErrUnsure)
		if _, err := d.Stat(name, true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): %v, want ENOENT", name, err)
		}
	}
	for _, name := range []string{"escape", "escape/x", "../" + filepath.Base(outside), "pxelinux.cfg/default/x", "", "pxelinux.cfg/", "/etc/passwd"} {
		if fi, err := d.Stat(name, false); !errors.Is(err, ErrUnsure) {
			t.Errorf("Stat(%q): %v, %v; want ErrUnsure (os.Root decides)", name, fi, err)
		}
	}
}
