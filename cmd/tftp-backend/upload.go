package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/gateway/upload"
)

// parseUploadFlags checks the -upload- flags and makes c.uploadPolicy.
// Each error names its flag.
func (c *config) parseUploadFlags(fs *flag.FlagSet) error {
	if c.uploadDir == "" {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, "upload-") {
				set = append(set, "-"+f.Name)
			}
		})
		if len(set) > 0 {
			return fmt.Errorf("%s: needs -upload-dir", strings.Join(set, ", "))
		}
		return nil
	}
	allow, err := splitGlobs(c.uploadAllow)
	if err != nil {
		return fmt.Errorf("-upload-allow %q: %w", c.uploadAllow, err)
	}
	for _, g := range allow {
		if (&upload.Policy{Allow: []string{g}}).Validate() != nil {
			return fmt.Errorf("-upload-allow: %q is not a valid pattern", g)
		}
	}
	if c.uploadPath == "" {
		return errors.New(`-upload-path: empty (the default is "{path}")`)
	}
	if err := (&upload.Policy{Path: c.uploadPath}).Validate(); err != nil {
		// The package's "upload: Path %q: " says what the flag's name says.
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("upload: Path %q: ", c.uploadPath))
		return fmt.Errorf("-upload-path %q: %s", c.uploadPath, msg)
	}
	c.uploadPolicy = &upload.Policy{Allow: allow, MaxSize: int64(c.uploadMaxSize), Path: c.uploadPath}
	if err := c.uploadPolicy.Validate(); err != nil {
		return err // checked above, flag by flag
	}
	return nil
}

// splitGlobs splits a comma-separated list of patterns at the commas that
// are outside braces ({a,b} is one pattern) and not escaped with \.
func splitGlobs(s string) ([]string, error) {
	var (
		globs []string
		depth int
		start int
	)
	for i := 0; i <= len(s); i++ {
		switch {
		case i < len(s) && s[i] == '\\':
			i++
		case i < len(s) && s[i] == '{':
			depth++
		case i < len(s) && s[i] == '}' && depth > 0:
			depth--
		case i == len(s) || s[i] == ',' && depth == 0:
			g := strings.TrimSpace(s[start:min(i, len(s))])
			if g == "" {
				return nil, fmt.Errorf("empty pattern %d", len(globs)+1)
			}
			globs = append(globs, g)
			start = i + 1
		}
	}
	return globs, nil
}

// uploads checks -upload-dir (a directory the process can create files
// in) and returns the write handler of the -upload- flags.
func uploads(c *config, logger *slog.Logger) (gateway.WriteHandler, error) {
	fi, err := os.Stat(c.uploadDir)
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(c.uploadDir, ".tftp-backend-check.*.tftpgw-upload"); err == nil {
			f.Close()
			err = os.Remove(f.Name())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("-upload-dir %s: %w", c.uploadDir, err)
	}
	p := c.uploadPolicy
	logger.Info("tftp-backend takes uploads", "dir", c.uploadDir, "allow", p.Allow, "max_size", int64(c.uploadMaxSize),
		"overwrite", c.uploadOverwrite, "path", p.Path, "serve", c.uploadServe)
	return p.Wrap(&upload.Dir{Root: c.uploadDir, Overwrite: c.uploadOverwrite, Logger: logger}), nil
}

// sameDir reports whether a and b are one directory (neither empty).
func sameDir(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
