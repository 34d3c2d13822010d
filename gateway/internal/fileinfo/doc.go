// Package fileinfo tells what the portable os.FileInfo does not about a
// file served by FileServer, on Linux: its change time and inode (part of
// its ETag), its device and whether its filesystem is local (where one
// stat shows its current version), and whether the process reads files
// whatever their permissions. Elsewhere it answers "unknown".
package fileinfo
