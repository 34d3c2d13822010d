//go:build !linux

package cache

// adviseHugePages does nothing here: transparent huge pages are Linux's.
func adviseHugePages([]byte) error { return nil }
