package examples_test

// Uploads (ContentService.Write) against the example backends, driven
// directly with the generated Go client as an edge drives them: start,
// accepted, data in chunks of at most 32 KiB, end with size and SHA-256,
// stored, OK. The helpers here (uploadBackend, startUploads, uploadCall,
// upload, leftovers...) are meant for the end-to-end test through the
// tftpgw binary and real TFTP clients as well, once the edge serves write
// requests.
//
// A missing runtime skips a backend's tests as in backends_test.go (fails
// them in CI).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tftpgwv1 "github.com/tftpgw/tftpgw/proto/tftpgw/v1"
)

// edgeChunk is the largest data message an edge sends in a Write.
const edgeChunk = 32 << 10

// uploadBackends are the backends that store uploads. The Go reference
// (tftp-backend -upload-dir) joins them when it has the flags: uploadArgs
// knows its single-dash spelling.
var uploadBackends = []backend{pythonBackend, nodeBackend}

// uploadConfig is how a backend is started for uploads.
type uploadConfig struct {
	dir       string // --upload-dir; "" for none (uploads refused)
	overwrite bool   // --upload-overwrite
	maxSize   int64  // --upload-max-size; 0 for none
}

// uploadArgs returns b's flags for c.
func uploadArgs(b backend, c uploadConfig) []string {
	dash := "--"
	if b.name == "go" {
		dash = "-"
	}
	var args []string
	if c.dir != "" {
		args = append(args, dash+"upload-dir", c.dir)
	}
	if c.overwrite {
		args = append(args, dash+"upload-overwrite")
	}
	if c.maxSize > 0 {
		args = append(args, dash+"upload-max-size", fmt.Sprint(c.maxSize))
	}
	return args
}

// startUploads runs b serving reads from a new empty directory and
// storing uploads as c says (a new directory if c.dir is "-"), and
// returns the process and the upload directory.
func startUploads(t *testing.T, b backend, c uploadConfig) (*proc, string) {
	t.Helper()
	root := t.TempDir()
	if c.dir == "-" {
		c.dir = t.TempDir()
	}
	return start(t, b, root, "127.0.0.1:0", uploadArgs(b, c)...), c.dir
}

// dialContent returns a ContentService client of the backend at addr,
// closed when the test ends.
func dialContent(t *testing.T, addr string) tftpgwv1.ContentServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tftpgwv1.NewContentServiceClient(conn)
}

// writeStart is the WriteStart an edge sends for path (its text and its
// bytes), with the declared size if size >= 0.
func writeStart(path string, size int64) *tftpgwv1.WriteStart {
	s := &tftpgwv1.WriteStart{
		SessionId:    "examples-upload-test",
		RawPath:      strings.ToValidUTF8(path, "\uFFFD"),
		Path:         strings.ToValidUTF8(path, "\uFFFD"),
		RawPathBytes: []byte(path),
		PathBytes:    []byte(path),
		Mode:         "octet",
		Client:       &tftpgwv1.Address{Ip: "127.0.0.1", Port: 40000},
		EdgeId:       "examples-test",
	}
	if size >= 0 {
		s.Size = proto.Int64(size)
	}
	return s
}

// uploadCall is one Write call, driven step by step as an edge does, or
// otherwise.
type uploadCall struct {
	stream grpc.BidiStreamingClient[tftpgwv1.WriteRequest, tftpgwv1.WriteResponse]
	cancel context.CancelFunc
}

// newUploadCall starts a Write call with a deadline of transferTimeout;
// cancel it when done.
func newUploadCall(ctx context.Context, client tftpgwv1.ContentServiceClient) (*uploadCall, error) {
	ctx, cancel := context.WithTimeout(ctx, transferTimeout)
	stream, err := client.Write(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &uploadCall{stream: stream, cancel: cancel}, nil
}

// openUpload is newUploadCall, cancelled when the test ends.
func openUpload(t *testing.T, client tftpgwv1.ContentServiceClient) *uploadCall {
	t.Helper()
	u, err := newUploadCall(t.Context(), client)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	t.Cleanup(u.cancel)
	return u
}

// send sends one message. An error means the backend has ended the call:
// finish() has its status.
func (u *uploadCall) send(m *tftpgwv1.WriteRequest) error { return u.stream.Send(m) }

func (u *uploadCall) start(s *tftpgwv1.WriteStart) error {
	return u.send(&tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Start{Start: s}})
}

func (u *uploadCall) data(p []byte) error {
	return u.send(&tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_Data{Data: p}})
}

func (u *uploadCall) end(size int64, sum []byte) error {
	return u.send(&tftpgwv1.WriteRequest{Msg: &tftpgwv1.WriteRequest_End{End: &tftpgwv1.WriteEnd{Size: size, Sha256: sum}}})
}

// recv returns the next response: accepted or stored, or the call's
// status (io.EOF for OK).
func (u *uploadCall) recv() (*tftpgwv1.WriteResponse, error) { return u.stream.Recv() }

// accepted waits for the backend's answer to start: nil if it accepted,
// else the call's error.
func (u *uploadCall) accepted() error {
	m, err := u.recv()
	switch {
	case err == io.EOF:
		return errors.New("the call ended with OK before accepted")
	case err != nil:
		return err
	case m.GetAccepted() == nil:
		return fmt.Errorf("%v before accepted", m)
	}
	return nil
}

// finish reads what remains of the call: the stored size, and the call's
// status (nil for OK after stored).
func (u *uploadCall) finish() (stored *tftpgwv1.WriteStored, err error) {
	for {
		m, err := u.recv()
		switch {
		case err == io.EOF && stored == nil:
			return nil, errors.New("the call ended with OK without stored")
		case err == io.EOF:
			return stored, nil
		case err != nil:
			return stored, err
		case m.GetStored() == nil:
			return stored, fmt.Errorf("%v after accepted", m)
		case stored != nil:
			return stored, errors.New("a second stored")
		}
		stored = m.GetStored()
	}
}

// uploadResult is the outcome of an upload.
type uploadResult struct {
	accepted bool
	stored   *tftpgwv1.WriteStored
	err      error // the call's status; nil if it ended OK after stored
}

// upload stores data as path, as an edge does: start (with the declared
// size if declared >= 0), data in chunks of at most chunk bytes once
// accepted, then end with the size and SHA-256 of the data, or with
// badEnd if it is not nil. It may run on any goroutine.
func upload(t *testing.T, client tftpgwv1.ContentServiceClient, path string, declared int64, data []byte, chunk int, badEnd *tftpgwv1.WriteEnd) uploadResult {
	var r uploadResult
	u, err := newUploadCall(t.Context(), client)
	if err != nil {
		r.err = err
		return r
	}
	defer u.cancel()
	if r.err = u.start(writeStart(path, declared)); r.err == nil {
		r.err = u.accepted()
	}
	if r.err != nil {
		if r.err == io.EOF { // Send: the call has ended
			_, r.err = u.finish()
		}
		return r
	}
	r.accepted = true
	for p := data; len(p) > 0 && r.err == nil; {
		n := min(chunk, len(p))
		r.err = u.data(p[:n])
		p = p[n:]
	}
	if r.err == nil {
		sum := sha256.Sum256(data)
		end := &tftpgwv1.WriteEnd{Size: int64(len(data)), Sha256: sum[:]}
		if badEnd != nil {
			end = badEnd
		}
		r.err = u.end(end.GetSize(), end.GetSha256())
	}
	if r.err == nil {
		r.err = u.stream.CloseSend()
	}
	// An error from Send is io.EOF: the status comes from Recv.
	r.stored, r.err = u.finish()
	return r
}

// tftpError returns the TFTPError in err's status details.
func tftpError(err error) (*tftpgwv1.TFTPError, bool) {
	for _, d := range status.Convert(err).Details() {
		if te, ok := d.(*tftpgwv1.TFTPError); ok {
			return te, true
		}
	}
	return nil, false
}

// wantRefusal checks that err is a status with code and, if tftpCode is
// not negative, a TFTPError of that code and message.
func wantRefusal(t *testing.T, err error, code codes.Code, tftpCode int, tftpMsg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the upload succeeded; want %s", code)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Errorf("status %s (%q), want %s", st.Code(), st.Message(), code)
	}
	te, ok := tftpError(err)
	switch {
	case tftpCode < 0 && ok:
		t.Errorf("TFTPError %d %q in the details, want none", te.GetCode(), te.GetMessage())
	case tftpCode >= 0 && !ok:
		t.Errorf("no TFTPError in the details (%v), want %d %q", st.Details(), tftpCode, tftpMsg)
	case tftpCode >= 0 && (te.GetCode() != uint32(tftpCode) || te.GetMessage() != tftpMsg):
		t.Errorf("TFTPError %d %q, want %d %q", te.GetCode(), te.GetMessage(), tftpCode, tftpMsg)
	}
}

// leftovers lists the files (not directories) under dir/sub, relative to
// dir, with "/" separators.
func leftovers(t *testing.T, dir, sub string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// wantFiles waits (up to logTimeout) until the files under dir/sub are
// exactly want, and fails the test if they never are: a backend removes
// its temporary file when a call ends, maybe after the edge saw the end.
func wantFiles(t *testing.T, dir, sub string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	if !waitFor(func() bool { got = leftovers(t, dir, sub); return slices.Equal(got, want) }) {
		t.Errorf("files under %s: %q, want %q", sub, got, want)
	}
}

// wantContent checks that dir/name holds data.
func wantContent(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s: %d bytes (sha256 %x), want %d (sha256 %x)", name, len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

// uploadLogged returns the regexp of a backend's log line for an upload of
// path that ended with status.
func uploadLogged(path, status string) *regexp.Regexp {
	return regexp.MustCompile(`write .*path="` + regexp.QuoteMeta(path) + `" .*status=` + status + ` `)
}

// randomData returns n bytes of a fixed pseudo-random sequence.
func randomData(n int, seed byte) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'u', 'p', 'l', 'o', 'a', 'd', seed}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// uploadMax is the --upload-max-size of the create-only backend of
// TestUploadBackends: the largest round trip is exactly at it.
const uploadMax = 3 << 20

func TestUploadBackends(t *testing.T) {
	for _, b := range uploadBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			need(t, b)
			p, dir := startUploads(t, b, uploadConfig{dir: "-", maxSize: uploadMax})
			client := dialContent(t, p.addr)
			t.Run("round trips are byte-identical", func(t *testing.T) { testUploadRoundTrips(t, client, dir) })
			t.Run("path_bytes names the file", func(t *testing.T) { testUploadRawName(t, client, dir) })
			t.Run("sizes over the limit are refused", func(t *testing.T) { testUploadTooLarge(t, client, dir) })
			t.Run("create-only refuses an existing file", func(t *testing.T) { testUploadExists(t, client, dir) })
			t.Run("create-only stores one of two racing uploads", func(t *testing.T) { testUploadRace(t, client, dir) })
			t.Run("cancelled upload leaves nothing", func(t *testing.T) { testUploadCancel(t, client, dir, p) })
			t.Run("wrong end is DATA_LOSS", func(t *testing.T) { testUploadBadEnd(t, client, dir) })
			t.Run("paths out of the directory are refused", func(t *testing.T) { testUploadEscape(t, client, dir) })
			t.Run("a misbehaving edge stores nothing", func(t *testing.T) { testUploadMisbehaving(t, client, dir) })
			t.Run("overwrite mode replaces", func(t *testing.T) {
				p, dir := startUploads(t, b, uploadConfig{dir: "-", overwrite: true})
				testUploadOverwrite(t, dialContent(t, p.addr), dir)
			})
			t.Run("without an upload directory uploads are refused", func(t *testing.T) {
				p, dir := startUploads(t, b, uploadConfig{})
				r := upload(t, dialContent(t, p.addr), "configs/x.cfg", 5, []byte("hello"), edgeChunk, nil)
				wantRefusal(t, r.err, codes.PermissionDenied, 2, "uploads not enabled")
				if r.accepted {
					t.Error("accepted before the refusal")
				}
				wantFiles(t, dir, "")
				p.waitLog(t, uploadLogged("configs/x.cfg", "PERMISSION_DENIED"))
			})
		})
	}
}

func testUploadRoundTrips(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	sizes := []struct {
		name     string
		size     int
		declared bool
		chunk    int
	}{
		{"empty", 0, true, edgeChunk},
		{"1 byte", 1, false, edgeChunk},
		{"512 bytes in TFTP blocks", 512, true, 512},
		{"100 KiB in 1468-byte blocks", 100 << 10, false, blockSize},
		{"3 MiB, the limit", uploadMax, true, edgeChunk},
	}
	var want []string
	for i, s := range sizes {
		name := fmt.Sprintf("rt/configs/sub%d/file-%d.bin", i, s.size)
		want = append(want, name)
		t.Run(s.name, func(t *testing.T) {
			data := randomData(s.size, byte(i))
			declared := int64(-1)
			if s.declared {
				declared = int64(s.size)
			}
			r := upload(t, client, name, declared, data, s.chunk, nil)
			if r.err != nil {
				t.Fatalf("upload: %v", r.err)
			}
			if r.stored.GetSize() != int64(s.size) {
				t.Errorf("stored size %d, want %d", r.stored.GetSize(), s.size)
			}
			// Stored means on disk before the call ends: no waiting.
			wantContent(t, dir, name, data)
		})
	}
	wantFiles(t, dir, "rt", want...)
}

func testUploadRawName(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	const name = "raw/caf\xe9.cfg"
	data := []byte("a Latin-1 name\n")
	r := upload(t, client, name, int64(len(data)), data, edgeChunk, nil)
	if r.err != nil {
		t.Fatalf("upload: %v", r.err)
	}
	wantContent(t, dir, name, data)
	wantFiles(t, dir, "raw", name) // not "caf\uFFFD.cfg"
}

func testUploadTooLarge(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	t.Run("declared", func(t *testing.T) {
		r := upload(t, client, "big/declared.bin", uploadMax+1, randomData(16, 1), edgeChunk, nil)
		wantRefusal(t, r.err, codes.ResourceExhausted, 3, "file too large")
		if r.accepted {
			t.Error("accepted before the refusal: the client would have sent its data")
		}
		wantFiles(t, dir, "big")
	})
	t.Run("undeclared", func(t *testing.T) {
		r := upload(t, client, "big/undeclared.bin", -1, randomData(uploadMax+1, 2), edgeChunk, nil)
		wantRefusal(t, r.err, codes.ResourceExhausted, 3, "file too large")
		wantFiles(t, dir, "big")
	})
	t.Run("declared within the limit but sent over it", func(t *testing.T) {
		r := upload(t, client, "big/lied.bin", 10, randomData(uploadMax+edgeChunk, 3), edgeChunk, nil)
		wantRefusal(t, r.err, codes.ResourceExhausted, 3, "file too large")
		wantFiles(t, dir, "big")
	})
}

func testUploadExists(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	const name = "exists/old.cfg"
	old := []byte("the first upload\n")
	if r := upload(t, client, name, -1, old, edgeChunk, nil); r.err != nil {
		t.Fatalf("first upload: %v", r.err)
	}
	r := upload(t, client, name, -1, []byte("the second upload\n"), edgeChunk, nil)
	wantRefusal(t, r.err, codes.AlreadyExists, 6, "file already exists")
	if r.accepted {
		t.Error("accepted before the refusal: the client would have sent its data")
	}
	wantContent(t, dir, name, old)
	wantFiles(t, dir, "exists", name)
}

// Two uploads of one new name at once: both are accepted (the name is
// free), the first to end is stored, the other fails at its end with
// ALREADY_EXISTS and never replaces it.
func testUploadRace(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	const name = "race/new.cfg"
	a, b := openUpload(t, client), openUpload(t, client)
	da, db := []byte("upload a\n"), []byte("upload b, longer\n")
	for _, u := range []*uploadCall{a, b} {
		if err := u.start(writeStart(name, -1)); err != nil {
			t.Fatal(err)
		}
		if err := u.accepted(); err != nil {
			t.Fatalf("accepted: %v", err)
		}
	}
	finish := func(u *uploadCall, data []byte) error {
		sum := sha256.Sum256(data)
		if err := u.data(data); err != nil {
			return err
		}
		if err := u.end(int64(len(data)), sum[:]); err != nil {
			return err
		}
		u.stream.CloseSend()
		_, err := u.finish()
		return err
	}
	if err := finish(a, da); err != nil {
		t.Fatalf("the first upload to end: %v", err)
	}
	err := finish(b, db)
	wantRefusal(t, err, codes.AlreadyExists, 6, "file already exists")
	wantContent(t, dir, name, da)
	wantFiles(t, dir, "race", name)
}

func testUploadCancel(t *testing.T, client tftpgwv1.ContentServiceClient, dir string, p *proc) {
	const name = "cancel/partial.bin"
	u := openUpload(t, client)
	if err := u.start(writeStart(name, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := u.accepted(); err != nil {
		t.Fatalf("accepted: %v", err)
	}
	data := randomData(100<<10, 4)
	for off := 0; off < len(data); off += edgeChunk {
		if err := u.data(data[off:min(off+edgeChunk, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	// The temporary file exists while the data arrives.
	if !waitFor(func() bool { return len(leftovers(t, dir, "cancel")) == 1 }) {
		t.Fatalf("files under cancel: %q; want one temporary file during the upload", leftovers(t, dir, "cancel"))
	}
	u.cancel() // the TFTP session ended: the client went away
	// grpcio may see the cancellation as the end of the stream first: a
	// stream without end, discarded the same way.
	p.waitLog(t, uploadLogged(name, "(CANCELLED|INVALID_ARGUMENT)"))
	wantFiles(t, dir, "cancel")
}

func testUploadBadEnd(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	data := randomData(50_000, 5)
	sum := sha256.Sum256(data)
	wrong := sha256.Sum256([]byte("something else"))
	tests := []struct {
		name string
		end  *tftpgwv1.WriteEnd
	}{
		{"wrong sha256", &tftpgwv1.WriteEnd{Size: int64(len(data)), Sha256: wrong[:]}},
		{"wrong size", &tftpgwv1.WriteEnd{Size: int64(len(data)) + 1, Sha256: sum[:]}},
		{"no sha256", &tftpgwv1.WriteEnd{Size: int64(len(data))}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := upload(t, client, fmt.Sprintf("badend/%d.bin", i), -1, data, edgeChunk, tt.end)
			wantRefusal(t, r.err, codes.DataLoss, 0, "integrity check failed")
			if r.stored != nil {
				t.Errorf("stored %v before the error", r.stored)
			}
		})
	}
	wantFiles(t, dir, "badend")
}

// The edge cleans paths, so none of these reaches a backend from a TFTP
// client; a backend checks anyway.
func testUploadEscape(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	outside := t.TempDir()
	for link, target := range map[string]string{
		"esc/out":      outside,
		"esc/file-out": filepath.Join(outside, "target.cfg"),
		"esc/up":       "../..",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{
		"esc/out/x.cfg",         // through a linked directory
		"esc/out/new/dir/x.cfg", // and directories to create there
		"esc/file-out",          // a dangling link to a file outside
		"esc/up/x.cfg",          // a relative link upwards
		"../x.cfg",              // never sent by the edge
		"/tmp/x.cfg",            // never sent by the edge
		"esc/../../x.cfg",       // never sent by the edge
	} {
		t.Run(path, func(t *testing.T) {
			r := upload(t, client, path, -1, []byte("x\n"), edgeChunk, nil)
			wantRefusal(t, r.err, codes.PermissionDenied, 2, "access violation")
			if r.accepted {
				t.Error("accepted before the refusal")
			}
		})
	}
	wantFiles(t, outside, "")
	wantFiles(t, dir, "esc", "esc/file-out", "esc/out", "esc/up") // the links only
	t.Run("a directory is not a regular file", func(t *testing.T) {
		r := upload(t, client, "esc", -1, []byte("x\n"), edgeChunk, nil)
		wantRefusal(t, r.err, codes.PermissionDenied, 2, "not a regular file")
	})
}

// What an edge never does: it ends its side without end, sends data
// before start, a second start, or an empty message. The backend fails
// the call and stores nothing.
func testUploadMisbehaving(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	tests := []struct {
		name  string
		steps func(u *uploadCall) error // after start and accepted, unless first
		first bool                      // steps replace start
	}{
		{name: "stream closed without end", steps: func(u *uploadCall) error {
			if err := u.data(randomData(70_000, 6)); err != nil {
				return err
			}
			return u.stream.CloseSend()
		}},
		{name: "stream closed right after accepted", steps: func(u *uploadCall) error {
			return u.stream.CloseSend()
		}},
		{name: "second start", steps: func(u *uploadCall) error {
			if err := u.data([]byte("abc")); err != nil {
				return err
			}
			return u.start(writeStart("misbehave/second.cfg", -1))
		}},
		{name: "empty message", steps: func(u *uploadCall) error {
			return u.send(&tftpgwv1.WriteRequest{})
		}},
		{name: "data before start", first: true, steps: func(u *uploadCall) error {
			return u.data([]byte("abc"))
		}},
		{name: "end before start", first: true, steps: func(u *uploadCall) error {
			sum := sha256.Sum256(nil)
			return u.end(0, sum[:])
		}},
		{name: "stream closed before start", first: true, steps: func(u *uploadCall) error {
			return u.stream.CloseSend()
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := openUpload(t, client)
			defer u.cancel()
			if !tt.first {
				if err := u.start(writeStart(fmt.Sprintf("misbehave/%d.cfg", i), -1)); err != nil {
					t.Fatal(err)
				}
				if err := u.accepted(); err != nil {
					t.Fatalf("accepted: %v", err)
				}
			}
			if err := tt.steps(u); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			_, err := u.finish()
			wantRefusal(t, err, codes.InvalidArgument, -1, "")
		})
	}
	wantFiles(t, dir, "misbehave")
}

func testUploadOverwrite(t *testing.T, client tftpgwv1.ContentServiceClient, dir string) {
	const name = "ow/configs/switch1.cfg"
	for i, data := range [][]byte{
		[]byte("first version, the longer one\n"),
		[]byte("second\n"),
		randomData(200<<10, 7),
	} {
		r := upload(t, client, name, int64(len(data)), data, edgeChunk, nil)
		if r.err != nil {
			t.Fatalf("upload %d: %v", i, r.err)
		}
		wantContent(t, dir, name, data)
	}
	// Overwrite still discards what a cancelled upload sent: the stored
	// version stays.
	kept := randomData(200<<10, 7)
	u := openUpload(t, client)
	if err := u.start(writeStart(name, -1)); err != nil {
		t.Fatal(err)
	}
	if err := u.accepted(); err != nil {
		t.Fatal(err)
	}
	if err := u.data([]byte("a new version, cut short")); err != nil {
		t.Fatal(err)
	}
	u.cancel()
	wantFiles(t, dir, "ow", name)
	wantContent(t, dir, name, kept)
	// Uploads running at once each store a whole file: the last one.
	var wg sync.WaitGroup
	versions := make([][]byte, 4)
	errs := make([]error, len(versions))
	for i := range versions {
		versions[i] = randomData(64<<10+i, byte(10+i))
		wg.Go(func() { errs[i] = upload(t, client, name, -1, versions[i], edgeChunk, nil).err })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent upload %d: %v", i, err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
		t.Errorf("%s: %d bytes that are none of the versions uploaded", name, len(got))
	}
	wantFiles(t, dir, "ow", name)
}
