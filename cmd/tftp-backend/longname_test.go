package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Sources are tried in order and only "file not found" passes a request on.
// The templates source looks up P+".tmpl"; for a file whose name is
// 251..255 bytes long that lookup fails with ENAMETOOLONG, which is not
// treated as "missing", so an existing -root file can never be served when
// -templates is also set: the client gets TFTP error 0 instead.
func TestLongNameFallsThroughTemplates(t *testing.T) {
	root, tmpl := t.TempDir(), t.TempDir()
	name := strings.Repeat("k", 255) // a valid file name (NAME_MAX)
	writeFile(t, filepath.Join(root, name), "kernel")
	writeFile(t, filepath.Join(tmpl, "pxelinux.cfg", "default.tmpl"), "DEFAULT local\n")

	// Without -templates the file is served.
	conn := connect(t, startBackend(t, "-root", root), nil)
	if got, err := fetch(t.Context(), conn, name); err != nil || got != "kernel" {
		t.Fatalf("-root alone: %q, %v", got, err)
	}
	conn = connect(t, startBackend(t, "-root", root, "-templates", tmpl), nil)
	if got, err := fetch(t.Context(), conn, name); err != nil || got != "kernel" {
		t.Errorf("-templates then -root: got %q, %v; want %q (the file exists under -root)", got, err, "kernel")
	}
}
