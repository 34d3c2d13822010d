package upload

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/internal/fileinfo"
)

// Dir is a [gateway.WriteHandler] that stores each upload as a file under
// a directory, at the request's Path, atomically and never outside the
// directory (see the package documentation). Its zero value is not
// usable: Root must be set. A Dir is safe for concurrent use; its fields
// must not be changed while it is in use.
type Dir struct {
	// Root is the directory the uploads are stored under. It must exist;
	// it is opened anew for every upload.
	Root string

	// Overwrite lets an upload replace the regular file of the same name
	// (by a rename: a reader of the old file keeps reading it whole). If
	// false, an upload of a name that exists is refused with ERROR 6
	// "file already exists".
	Overwrite bool

	// Perm is the permission bits of the stored files, before the umask;
	// 0644 if zero.
	Perm fs.FileMode

	// Logger receives a debug line per stored file and a warning for a
	// temporary file that could not be removed; slog.Default() if nil.
	Logger *slog.Logger
}

// tempSuffix ends the name of every temporary file; a name ending in it
// cannot be uploaded.
const tempSuffix = ".tftpgw-upload"

var (
	errAccess   = &gateway.Error{Code: gateway.ErrAccessViolation, Message: "access violation"}
	errDiskFull = &gateway.Error{Code: gateway.ErrDiskFull, Message: "disk full or allocation exceeded"}
	errFinished = errors.New("upload: the upload is already committed or aborted")
)

// ReceiveTFTP implements [gateway.WriteHandler]: it checks the target,
// creates its missing parent directories and the temporary file, and
// returns the upload that fills it.
func (d *Dir) ReceiveTFTP(ctx context.Context, req *gateway.Request) (gateway.Upload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := gateway.CleanPath(req.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: upload: %q: %w", errAccess, req.Path, err)
	}
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i], name[i+1:]
	}
	if strings.HasSuffix(base, tempSuffix) {
		return nil, fmt.Errorf("%w: upload: %q: names ending in %q are reserved for temporary files", errAccess, name, tempSuffix)
	}
	root, err := os.OpenRoot(d.Root)
	if err != nil {
		// Not the client's fault, whatever the error: ERROR 0.
		return nil, fmt.Errorf("upload: open the upload directory: %v", err)
	}
	u := &dirUpload{root: root, dir: dir, name: name, overwrite: d.Overwrite, log: d.Logger}
	if u.log == nil {
		u.log = slog.Default()
	}
	if err := u.start(base, d.Perm); err != nil {
		u.Abort() // the directories it made, if any
		return nil, err
	}
	return u, nil
}

// dirUpload is Dir's upload: a temporary file in the target's directory.
type dirUpload struct {
	root      *os.Root // nil once committed or aborted
	dir       string   // the target's directory, "" for the root's top
	name      string   // the target
	tmp       string   // the temporary file
	overwrite bool
	newDirs   bool     // parent directories were created: their parents are fsynced too
	created   []string // the directories created for it, shallowest first: Abort removes them if still empty
	f         *os.File
	w         *bufio.Writer
	n         int64
	log       *slog.Logger
}

func (u *dirUpload) start(base string, perm fs.FileMode) error {
	fi, err := u.root.Lstat(u.name)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%w: upload: %q is a directory", gateway.ErrNotRegular, u.name)
	case err == nil && !u.overwrite:
		return fmt.Errorf("upload: %q: %w", u.name, fs.ErrExist)
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%w: upload: %q is %s, not replaced", gateway.ErrNotRegular, u.name, fileinfo.Kind(fi.Mode()))
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && u.dir != "":
		if _, err := u.root.Lstat(u.dir); errors.Is(err, fs.ErrNotExist) {
			for i := 0; i <= len(u.dir); i++ {
				if i < len(u.dir) && u.dir[i] != '/' {
					continue
				}
				if _, err := u.root.Lstat(u.dir[:i]); errors.Is(err, fs.ErrNotExist) {
					u.created = append(u.created, u.dir[:i])
				}
			}
			if err := u.root.MkdirAll(u.dir, 0o755); err != nil {
				return fmt.Errorf("upload: create the directory of %q: %w", u.name, refusal(err))
			}
			u.newDirs = true
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("upload: %q: %w", u.name, refusal(err))
	}

	if perm == 0 {
		perm = 0o644
	}
	// NAME_MAX is 255 bytes: a long name is cut in the temporary's.
	const random = 8
	if max := 255 - len(".."+tempSuffix) - 2*random; len(base) > max {
		base = base[:max]
	}
	for try := 0; ; try++ {
		var b [random]byte
		rand.Read(b[:])
		tmp := "." + base + "." + hex.EncodeToString(b[:]) + tempSuffix
		if u.dir != "" {
			tmp = u.dir + "/" + tmp
		}
		// O_EXCL: a file or symbolic link of that name is never reused.
		u.f, err = u.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&fs.ModePerm)
		if err == nil {
			u.tmp = tmp // only ours: Abort removes it
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 2 {
			return fmt.Errorf("upload: create a temporary file for %q: %w", u.name, refusal(err))
		}
	}
	u.w = bufio.NewWriterSize(u.f, 64<<10)
	return nil
}

// Write adds p to the temporary file.
func (u *dirUpload) Write(p []byte) (int, error) {
	if u.f == nil {
		return 0, errFinished
	}
	n, err := u.w.Write(p)
	u.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("upload: write %q: %w", u.name, refusal(err))
	}
	return n, nil
}

// Commit flushes and fsyncs the temporary file, gives it its name (link
// or rename), removes the temporary name and fsyncs the directory. If it
// fails before the name is given, the temporary file is removed.
func (u *dirUpload) Commit() error {
	if u.f == nil {
		return errFinished
	}
	err := u.w.Flush()
	if err == nil {
		err = u.f.Sync()
	}
	if cerr := u.f.Close(); err == nil {
		err = cerr
	}
	u.f = nil
	if err != nil {
		u.Abort()
		return fmt.Errorf("upload: write %q: %w", u.name, refusal(err))
	}
	if u.overwrite {
		err = u.root.Rename(u.tmp, u.name)
	} else {
		// link(2) fails if the name exists: of two uploads, one wins.
		err = u.root.Link(u.tmp, u.name)
	}
	if err != nil {
		u.Abort()
		return fmt.Errorf("upload: store %q: %w", u.name, refusal(err))
	}
	if !u.overwrite {
		if err := u.root.Remove(u.tmp); err != nil {
			u.log.Warn("upload: stored, but its temporary name is left", "path", u.name, "temp", u.tmp, "err", err)
		}
	}
	err = u.syncDirs()
	u.root.Close()
	u.root = nil
	if err != nil {
		return fmt.Errorf("upload: %q is stored but its directory could not be synced: %w", u.name, err)
	}
	u.log.Debug("upload stored", "path", u.name, "bytes", u.n)
	return nil
}

// syncDirs fsyncs the target's directory, and the directories above it
// when some were created.
func (u *dirUpload) syncDirs() error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for a sync there
	}
	dir := u.dir
	for {
		if dir == "" {
			dir = "."
		}
		d, err := u.root.Open(dir)
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		if err != nil || !u.newDirs || dir == "." {
			return err
		}
		if i := strings.LastIndexByte(dir, '/'); i >= 0 {
			dir = dir[:i]
		} else {
			dir = ""
		}
	}
}

// Abort removes the temporary file. It does nothing after a Commit that
// stored the file, or a second time.
func (u *dirUpload) Abort() {
	if u.root == nil {
		return
	}
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	if u.tmp != "" {
		if err := u.root.Remove(u.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			u.log.Warn("upload: cannot remove a temporary file", "path", u.name, "temp", u.tmp, "err", err)
		}
	}
	// The directories made for it, if nothing else has come into them: an
	// upload refused or abandoned (a request never answered, from a
	// spoofed source) leaves no trace.
	for i := len(u.created) - 1; i >= 0; i-- {
		if u.root.Remove(u.created[i]) != nil {
			break
		}
	}
	u.root.Close()
	u.root = nil
}

// refusal gives err the TFTP error the client should see: a full disk or
// quota is ERROR 3; a name that exists ERROR 6 (as gateway.ErrorFor maps
// it); a path that is not allowed (a permission, a read-only filesystem,
// a file where a directory should be, a loop, a name too long, or
// os.Root's refusal of a path that leaves it) ERROR 2; any other system
// error ERROR 0.
func refusal(err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrExist), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return err
	case !errors.As(err, &errno):
		return fmt.Errorf("%w: %w", errAccess, err) // os.Root: "path escapes from parent"
	}
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return fmt.Errorf("%w: %w", errDiskFull, err)
	case syscall.EROFS, syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EINVAL:
		return fmt.Errorf("%w: %w", errAccess, err)
	}
	return err
}
