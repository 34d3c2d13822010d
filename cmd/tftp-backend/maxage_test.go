package main

import (
	"bytes"
	"testing"
)

// A negative -max-age is accepted without a word and silently means 0.
func TestNegativeMaxAgeRejected(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-root", dir, "-max-age", "-10s"}, &stderr); err == nil {
		t.Errorf("-max-age -10s: accepted")
	}
}
