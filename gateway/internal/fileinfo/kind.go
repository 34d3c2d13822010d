package fileinfo

import "io/fs"

// Kind names the kind of file m is, for the cause of a refusal: "a
// directory", where fs.FileMode.Type prints "d---------", which reads as
// a mode of 000 (found in operator review).
func Kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeIrregular != 0:
		return "an irregular file"
	}
	return "a file of type " + m.Type().String()
}
