//go:build !unix

package main

import "time"

// cpuTime is not available on this platform and reports zero.
func cpuTime() (user, sys time.Duration) { return 0, 0 }
