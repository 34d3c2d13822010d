package httpupstream

import (
	"errors"
	"io"
	"testing"

	"github.com/tftpgw/tftpgw/backend"
)

// The content's size is known (36 bytes) and a resume asks for offset 20.
// The upstream file has meanwhile been replaced by a 5-byte version (weak
// ETag, so no If-Range is sent) and answers 416. The offset is inside the
// content the header described, so 416 means a different version: Seek
// must fail (ErrETagMismatch), not report success and then EOF, which ends
// the resumed stream with OK after 20 of 36 bytes.
func TestSeek416InsideKnownSizeIsChange(t *testing.T) {
	r, h := start(t)
	r.set(`W/"v1"`, body)
	c, err := get(t, h, "boot/file")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != int64(len(body)) {
		t.Fatalf("size %d", c.Size())
	}
	r.set(`W/"v2"`, "short")
	_, err = c.(io.Seeker).Seek(20, io.SeekStart)
	if errors.Is(err, backend.ErrETagMismatch) {
		return
	}
	b, rerr := io.ReadAll(c)
	t.Errorf("Seek(20) on a changed, shorter file: err %v; then read %q, %v (stream would end OK, %d of %d bytes)",
		err, b, rerr, 20+len(b), len(body))
}
