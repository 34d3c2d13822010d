package tracing_test

import (
	"testing"

	"github.com/tftpgw/tftpgw/gateway/tracing"
)

const (
	tid = "0af7651916cd43dd8448eb211c80319c"
	sid = "b7ad6b7169203331"
)

func TestSplitTraceparent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		filename string
		want     string // the filename to use
		ok       bool
		sampled  bool
	}{
		{"sampled suffix is removed", "ipxe.efi-00-" + tid + "-" + sid + "-01", "ipxe.efi", true, true},
		{"unsampled parent is kept unsampled", "ipxe.efi-00-" + tid + "-" + sid + "-00", "ipxe.efi", true, false},
		{"other flags with the sampled bit", "ipxe.efi-00-" + tid + "-" + sid + "-03", "ipxe.efi", true, true},
		{"directories are kept", "0a:00:27:00:00:02/snp.efi-00-" + tid + "-" + sid + "-01", "0a:00:27:00:00:02/snp.efi", true, true},
		{"a name with dashes", "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff-00-" + tid + "-" + sid + "-01", "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff", true, true},
		{"a future version", "ipxe.efi-01-" + tid + "-" + sid + "-01", "ipxe.efi", true, true},
		{"no suffix", "undionly.kpxe", "undionly.kpxe", false, false},
		{"a name ending in dashes and digits", "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff", "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff", false, false},
		{"short ids", "undionly.ipxe-00-0000-0000-00", "undionly.ipxe-00-0000-0000-00", false, false},
		{"not hex", "undionly.ipxe-00-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-abcdefghijklmnop-01", "undionly.ipxe-00-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-abcdefghijklmnop-01", false, false},
		{"upper-case hex", "ipxe.efi-00-0AF7651916CD43DD8448EB211C80319C-" + sid + "-01", "ipxe.efi-00-0AF7651916CD43DD8448EB211C80319C-" + sid + "-01", false, false},
		{"trace id of zeros", "ipxe.efi-00-00000000000000000000000000000000-" + sid + "-01", "ipxe.efi-00-00000000000000000000000000000000-" + sid + "-01", false, false},
		{"span id of zeros", "ipxe.efi-00-" + tid + "-0000000000000000-01", "ipxe.efi-00-" + tid + "-0000000000000000-01", false, false},
		{"version ff", "ipxe.efi-ff-" + tid + "-" + sid + "-01", "ipxe.efi-ff-" + tid + "-" + sid + "-01", false, false},
		{"version not hex", "ipxe.efi-0g-" + tid + "-" + sid + "-01", "ipxe.efi-0g-" + tid + "-" + sid + "-01", false, false},
		{"flags not hex", "ipxe.efi-00-" + tid + "-" + sid + "-0x", "ipxe.efi-00-" + tid + "-" + sid + "-0x", false, false},
		{"something after the traceparent", "ipxe.efi-00-" + tid + "-" + sid + "-01.efi", "ipxe.efi-00-" + tid + "-" + sid + "-01.efi", false, false},
		{"no dash before it", "ipxe.efi00-" + tid + "-" + sid + "-01", "ipxe.efi00-" + tid + "-" + sid + "-01", false, false},
		{"a separator that is not a dash", "ipxe.efi-00-" + tid + "_" + sid + "-01", "ipxe.efi-00-" + tid + "_" + sid + "-01", false, false},
		{"nothing before it", "-00-" + tid + "-" + sid + "-01", "-00-" + tid + "-" + sid + "-01", false, false},
		{"the traceparent alone", "00-" + tid + "-" + sid + "-01", "00-" + tid + "-" + sid + "-01", false, false},
		{"empty", "", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, sc, ok := tracing.SplitTraceparent(tc.filename)
			if name != tc.want || ok != tc.ok {
				t.Fatalf("SplitTraceparent(%q) = %q, ok %v; want %q, ok %v", tc.filename, name, ok, tc.want, tc.ok)
			}
			if !ok {
				if sc.IsValid() {
					t.Errorf("span context %v for a filename without a traceparent", sc)
				}
				return
			}
			if sc.TraceID().String() != tid || sc.SpanID().String() != sid || !sc.IsRemote() {
				t.Errorf("span context: trace %s span %s remote %v; want %s %s remote", sc.TraceID(), sc.SpanID(), sc.IsRemote(), tid, sid)
			}
			if sc.IsSampled() != tc.sampled {
				t.Errorf("sampled %v, want %v", sc.IsSampled(), tc.sampled)
			}
		})
	}
}

// TestSplitTraceparentDoesNotAllocate: the split of every request's
// filename, with -trace-filename-traceparent, costs no allocation.
func TestSplitTraceparentDoesNotAllocate(t *testing.T) {
	for _, f := range []string{"ipxe.efi-00-" + tid + "-" + sid + "-01", "pxelinux.cfg/default"} {
		if n := testing.AllocsPerRun(100, func() { tracing.SplitTraceparent(f) }); n != 0 {
			t.Errorf("SplitTraceparent(%q): %v allocations", f, n)
		}
	}
}
