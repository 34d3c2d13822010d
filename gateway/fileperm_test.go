package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/gatewaytest"
)

// TestFileServerOnlyWhatAnyoneMayRead: run as root, FileServer serves a
// file only if anyone on the host may read it (regression: root served a
// mode-000 file, a 0600 key and files in a 0700 directory to any TFTP
// client). The client gets ERROR 2 "access violation", and the edge cache's
// StatContent refuses to vouch for the file.
func TestFileServerOnlyWhatAnyoneMayRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without it the kernel refuses these files (TestFileServer)")
	}
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o700)) // the root's own mode is the operator's choice: not checked
	content := []byte("boot me")
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"open", 0o755}, {"private", 0o700}, {"searchable", 0o711}, {"open/private", 0o750}} {
		must(t, os.Mkdir(filepath.Join(dir, d.name), d.mode))
		must(t, os.Chmod(filepath.Join(dir, d.name), d.mode)) // past the umask
	}
	files := []struct {
		path   string
		mode   os.FileMode
		served bool
	}{
		{"world-readable", 0o644, true},
		{"others-only", 0o004, true},
		{"mode-000", 0o000, false},
		{"owner-only", 0o600, false},
		{"owner-and-group", 0o640, false},
		{"executable-not-readable", 0o711, false},
		{"open/kernel", 0o644, true},
		{"searchable/kernel", 0o644, true},
		{"private/kernel", 0o644, false},
		{"open/private/kernel", 0o644, false},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		must(t, os.WriteFile(p, content, f.mode))
		must(t, os.Chmod(p, f.mode))
	}
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	h := gateway.FileServer(root)
	stat := h.(interface {
		StatContent(context.Context, *gateway.Request) (int64, gateway.ContentInfo, error)
	})
	ts := gatewaytest.NewServer(t, h, gatewaytest.FixedTimer)
	for _, tc := range files {
		t.Run(tc.path, func(t *testing.T) {
			c := gatewaytest.NewClient(t, ts.Addr())
			c.RRQ(tc.path, "octet")
			_, _, serr := stat.StatContent(context.Background(), &gateway.Request{Path: tc.path})
			if !tc.served {
				if serr == nil {
					t.Error("StatContent vouches for it")
				}
				c.Expect(gatewaytest.ErrorPacket(2, "access violation"))
				st := ts.NextStats(t)
				if st.Outcome != gateway.OutcomeError || st.BytesSent != 0 {
					t.Errorf("outcome %v, %d bytes sent", st.Outcome, st.BytesSent)
				}
				return
			}
			c.Expect(gatewaytest.Data(1, content))
			c.Ack(1)
			if st := ts.NextStats(t); st.Outcome != gateway.OutcomeOK {
				t.Errorf("outcome %v, want ok", st.Outcome)
			}
		})
	}
}
