package upload_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/upload"
)

// receive starts an upload of path to h.
func receive(t *testing.T, h gateway.WriteHandler, path string) (gateway.Upload, error) {
	t.Helper()
	return h.ReceiveTFTP(t.Context(), request(path, client4))
}

// store uploads data to path through h and commits it.
func store(t *testing.T, h gateway.WriteHandler, path, data string) error {
	t.Helper()
	u, err := receive(t, h, path)
	if err != nil {
		return err
	}
	if _, err := u.Write([]byte(data)); err != nil {
		u.Abort()
		return err
	}
	if err := u.Commit(); err != nil {
		u.Abort()
		return err
	}
	return nil
}

// files lists every name under dir (relative, slash-separated), sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var tmp []string
	for _, n := range files(t, dir) {
		if strings.HasSuffix(n, ".tftpgw-upload") {
			tmp = append(tmp, n)
		}
	}
	return tmp
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// code is the TFTP error code the client would get for err.
func code(err error) gateway.ErrorCode { return gateway.ErrorFor(err).Code }

func TestDirNothingUnderTheNameUntilCommit(t *testing.T) {
	for _, overwrite := range []bool{false, true} {
		root := t.TempDir()
		if overwrite {
			writeFile(t, filepath.Join(root, "boot/f"), "old")
		}
		d := &upload.Dir{Root: root, Overwrite: overwrite}
		u, err := receive(t, d, "boot/f")
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("0123456789abcdef"), 10000) // more than the buffer
		for chunk := range slices.Chunk(data, 512) {
			if _, err := u.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if overwrite {
			if got := readFile(t, filepath.Join(root, "boot/f")); got != "old" {
				t.Errorf("overwrite: before Commit the name holds %.20q, want the old file", got)
			}
		} else if _, err := os.Lstat(filepath.Join(root, "boot/f")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("before Commit the name exists (%v)", err)
		}
		tmp := tempFiles(t, root)
		if len(tmp) != 1 || !strings.HasPrefix(tmp[0], "boot/.f.") {
			t.Errorf("temporary files before Commit: %q, want one boot/.f.*.tftpgw-upload", tmp)
		}
		if err := u.Commit(); err != nil {
			t.Fatal(err)
		}
		u.Abort() // as the server would not, but must be harmless
		if got := readFile(t, filepath.Join(root, "boot/f")); got != string(data) {
			t.Errorf("stored %d bytes, want %d", len(got), len(data))
		}
		if tmp := tempFiles(t, root); len(tmp) != 0 {
			t.Errorf("temporary files after Commit: %q", tmp)
		}
		if _, err := u.Write([]byte("x")); err == nil {
			t.Error("Write after Commit: no error")
		}
	}
}

func TestDirAbortLeavesNothing(t *testing.T) {
	for _, tt := range []struct {
		name  string
		abort func(t *testing.T, u gateway.Upload)
	}{
		{"after writes", func(t *testing.T, u gateway.Upload) { u.Write([]byte("partial")); u.Abort() }},
		{"before any write", func(t *testing.T, u gateway.Upload) { u.Abort() }},
		{"twice", func(t *testing.T, u gateway.Upload) { u.Write([]byte("x")); u.Abort(); u.Abort() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			u, err := receive(t, &upload.Dir{Root: root}, "f")
			if err != nil {
				t.Fatal(err)
			}
			tt.abort(t, u)
			if names := files(t, root); len(names) != 0 {
				t.Errorf("left %q", names)
			}
			if err := u.Commit(); err == nil {
				t.Error("Commit after Abort: no error")
			}
			if names := files(t, root); len(names) != 0 {
				t.Errorf("Commit after Abort left %q", names)
			}
		})
	}
}

// TestDirCreateOnlyConcurrentUploadsOneWins: uploads of one new name that
// all passed the check at their start: exactly one is stored whole, the
// others get ERROR 6 at Commit and leave no temporary file.
func TestDirCreateOnlyConcurrentUploadsOneWins(t *testing.T) {
	root := t.TempDir()
	d := &upload.Dir{Root: root}
	const n = 8
	ups := make([]gateway.Upload, n)
	for i := range ups {
		u, err := receive(t, d, "same/name")
		if err != nil {
			t.Fatal(err)
		}
		ups[i] = u
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			u.Write(bytes.Repeat([]byte{byte('a' + i)}, 100000))
			errs[i] = u.Commit()
			if errs[i] != nil {
				u.Abort()
			}
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("uploads %d and %d both stored", winner, i)
		case err == nil:
			winner = i
		case code(err) != gateway.ErrFileExists:
			t.Errorf("upload %d: %v (ERROR %d), want ERROR 6", i, err, code(err))
		}
	}
	if winner < 0 {
		t.Fatal("no upload stored")
	}
	if got := readFile(t, filepath.Join(root, "same/name")); got != strings.Repeat(string(rune('a'+winner)), 100000) {
		t.Errorf("the name holds %.10q..., not upload %d's bytes", got, winner)
	}
	if names := files(t, root); len(names) != 2 {
		t.Errorf("files %q, want same and same/name only", names)
	}
}

func TestDirCreateOnlyRefusesAnExistingNameBeforeData(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "f"), "old")
	_, err := receive(t, &upload.Dir{Root: root}, "f")
	if code(err) != gateway.ErrFileExists {
		t.Fatalf("%v (ERROR %d), want ERROR 6", err, code(err))
	}
	if got := readFile(t, filepath.Join(root, "f")); got != "old" {
		t.Errorf("f is %q", got)
	}
	if names := files(t, root); len(names) != 1 {
		t.Errorf("files %q", names)
	}
}

func TestDirOverwriteReplaces(t *testing.T) {
	root := t.TempDir()
	name := filepath.Join(root, "f")
	writeFile(t, name, "old contents")
	reader, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := store(t, &upload.Dir{Root: root, Overwrite: true}, "f", "new"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, name); got != "new" {
		t.Errorf("f is %q, want new", got)
	}
	var b [64]byte
	if n, _ := reader.Read(b[:]); string(b[:n]) != "old contents" {
		t.Errorf("a reader of the old file reads %q", b[:n])
	}
	if names := files(t, root); len(names) != 1 {
		t.Errorf("files %q", names)
	}
}

func TestDirCreatesParentDirectories(t *testing.T) {
	root := t.TempDir()
	if err := store(t, &upload.Dir{Root: root}, "a/b/c/file", "x"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "a/b/c/file")); got != "x" {
		t.Errorf("stored %q", got)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755&^fs.FileMode(umask) {
			t.Errorf("%s: %v, %v; want a directory of mode %v", d, fi.Mode(), err, 0o755&^fs.FileMode(umask))
		}
	}
}

func TestDirPerm(t *testing.T) {
	umask := fs.FileMode(syscall.Umask(0))
	syscall.Umask(int(umask))
	for _, tt := range []struct {
		perm, want fs.FileMode
	}{{0, 0o644 &^ umask}, {0o600, 0o600 &^ umask}, {0o640, 0o640 &^ umask}} {
		root := t.TempDir()
		if err := store(t, &upload.Dir{Root: root, Perm: tt.perm}, "f", "x"); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(root, "f")); err != nil || fi.Mode().Perm() != tt.want {
			t.Errorf("Perm %v: stored with %v (%v), want %v", tt.perm, fi.Mode(), err, tt.want)
		}
	}
}

// TestDirNeverWritesOutsideItsRoot: neither "..", an absolute path nor a
// symbolic link leads out of the root, and nothing is created outside.
func TestDirNeverWritesOutsideItsRoot(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		overwrite  bool
		want       gateway.ErrorCode
		stored     string // where it must be stored if it is (relative to the root)
	}{
		{name: "dotdot", path: "../escaped", want: gateway.ErrAccessViolation},
		{name: "dotdot inside", path: "a/../../escaped", want: gateway.ErrAccessViolation},
		{name: "absolute stays inside", path: "/escaped", stored: "escaped"},
		{name: "backslashes stay inside", path: `\..\x\escaped`, want: gateway.ErrAccessViolation},
		{name: "through a symlinked directory", path: "outlink/escaped", want: gateway.ErrAccessViolation},
		{name: "through a symlinked directory, overwriting", path: "outlink/escaped", overwrite: true, want: gateway.ErrAccessViolation},
		{name: "into a new directory under a symlinked one", path: "outlink/new/escaped", want: gateway.ErrAccessViolation},
		{name: "a symlink to a file outside, create-only", path: "filelink", want: gateway.ErrFileExists},
		{name: "a symlink to a file outside, overwriting", path: "filelink", overwrite: true, want: gateway.ErrAccessViolation},
		{name: "a dangling symlink to outside, create-only", path: "dangling", want: gateway.ErrFileExists},
		{name: "a dangling symlink to outside, overwriting", path: "dangling", overwrite: true, want: gateway.ErrAccessViolation},
		{name: "an absolute symlink inside", path: "abslink/escaped", want: gateway.ErrAccessViolation},
		{name: "a relative symlink inside is followed", path: "inlink/f", stored: "in/f"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			root, outside := filepath.Join(top, "root"), filepath.Join(top, "outside")
			for _, d := range []string{root, outside, filepath.Join(root, "in")} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(outside, "target"), "outside")
			for link, to := range map[string]string{
				"outlink":  "../outside",
				"filelink": "../outside/target",
				"dangling": "../outside/none",
				"abslink":  filepath.Join(root, "in"),
				"inlink":   "in",
			} {
				if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
			before := files(t, root)
			err := store(t, &upload.Dir{Root: root, Overwrite: tt.overwrite}, tt.path, "data")
			if tt.stored != "" {
				if err != nil {
					t.Fatalf("%v, want it stored at %s", err, tt.stored)
				}
				if got := readFile(t, filepath.Join(root, tt.stored)); got != "data" {
					t.Errorf("%s holds %q", tt.stored, got)
				}
			} else {
				if err == nil || code(err) != tt.want {
					t.Errorf("%v (ERROR %d), want ERROR %d", err, code(err), tt.want)
				}
				if after := files(t, root); !equal(after, before) {
					t.Errorf("the root changed: %q, was %q", after, before)
				}
			}
			if names := files(t, outside); len(names) != 1 || readFile(t, filepath.Join(outside, "target")) != "outside" {
				t.Errorf("outside changed: %q", names)
			}
			if entries, _ := os.ReadDir(top); len(entries) != 2 {
				t.Errorf("above the root: %v, want outside and root only", entries)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDirRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, path string
		overwrite  bool
		want       gateway.ErrorCode
	}{
		{"a directory, create-only", "dir", false, gateway.ErrAccessViolation},
		{"a directory, overwriting", "dir", true, gateway.ErrAccessViolation},
		{"under a file", "file/x", false, gateway.ErrAccessViolation},
		{"a temporary file's name", ".x.0011223344556677.tftpgw-upload", false, gateway.ErrAccessViolation},
		{"an empty path", "", false, gateway.ErrAccessViolation},
		{"the root itself", ".", true, gateway.ErrAccessViolation},
		{"a name too long", strings.Repeat("n", 256), false, gateway.ErrAccessViolation},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(root, "file"), "f")
			_, err := receive(t, &upload.Dir{Root: root, Overwrite: tt.overwrite}, tt.path)
			if err == nil || code(err) != tt.want {
				t.Errorf("%v (ERROR %d), want ERROR %d", err, code(err), tt.want)
			}
			if names := files(t, root); len(names) != 2 {
				t.Errorf("files %q", names)
			}
		})
	}
}

func TestDirStoresALongName(t *testing.T) {
	root := t.TempDir()
	name := strings.Repeat("n", 255)
	if err := store(t, &upload.Dir{Root: root}, name, "x"); err != nil {
		t.Fatal(err)
	}
	if names := files(t, root); len(names) != 1 || names[0] != name {
		t.Errorf("files %q", names)
	}
}

func TestDirMissingRootIsAServerError(t *testing.T) {
	_, err := receive(t, &upload.Dir{Root: filepath.Join(t.TempDir(), "missing")}, "f")
	if err == nil || code(err) != gateway.ErrNotDefined {
		t.Errorf("%v (ERROR %d), want ERROR 0", err, code(err))
	}
}

func TestDirCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	root := t.TempDir()
	if _, err := (&upload.Dir{Root: root}).ReceiveTFTP(ctx, &gateway.Request{Path: "f"}); err == nil {
		t.Error("no error")
	}
	if names := files(t, root); len(names) != 0 {
		t.Errorf("files %q", names)
	}
}

func writeFile(t *testing.T, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDirAbortRemovesTheDirectoriesItMade is a regression test (review):
// an upload refused or abandoned before any data (a write request from a
// spoofed source that never answers) left the directories made for it,
// so a client could create inodes without sending a byte. Directories
// that were there before, or that another upload filled meanwhile, stay.
func TestDirAbortRemovesTheDirectoriesItMade(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "configs"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := receive(t, &upload.Dir{Root: root}, "configs/a/b/c/file")
	if err != nil {
		t.Fatal(err)
	}
	other, err := receive(t, &upload.Dir{Root: root}, "configs/a/other")
	if err != nil {
		t.Fatal(err)
	}
	u.Abort()
	if names := files(t, root); len(names) != 3 || names[0] != "configs" || names[1] != "configs/a" { // configs, configs/a and other's temporary file
		t.Errorf("after the first abort: %q", names)
	}
	other.Abort()
	// configs/a was the first upload's, in use by the other at its abort:
	// it stays (a race that leaves one empty directory, not a leak per
	// request).
	if names := files(t, root); len(names) != 2 || names[1] != "configs/a" {
		t.Errorf("after both aborts: %q, want configs and configs/a", names)
	}
	u, err = receive(t, &upload.Dir{Root: root}, "x/y/z")
	if err != nil {
		t.Fatal(err)
	}
	u.Abort()
	if names := files(t, root); len(names) != 2 {
		t.Errorf("after an abort in new directories: %q, want configs and configs/a", names)
	}
}
