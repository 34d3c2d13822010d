// Package tftpclient is a strict TFTP client: reads (RRQ) and writes (WRQ).
//
// It implements RFC 1350 lock-step transfers and the option extensions of
// RFC 2347 (option negotiation), RFC 2348 (blksize), RFC 2349 (timeout and
// tsize) and RFC 7440 (windowsize). It is used by the tftpbench load
// generator and by tests that need a well-behaved, pedantic client: every
// OACK is validated against what was requested, packets from a foreign
// transfer ID are answered with ERROR 5, and protocol violations by the
// server end the transfer with an error instead of being tolerated.
//
// [Get] downloads one file, [Put] uploads one (windowed as RFC 7440
// section 4 describes, never answering a duplicate ACK), [Probe] performs
// the UEFI-style size probe (request tsize, read the OACK, abort with
// ERROR 8).
//
// In netascii mode [Get] returns the bytes exactly as they arrive on the
// wire: no CR LF or CR NUL translation is performed. [Put] does translate
// what it sends (LF to CR LF, CR to CR NUL).
package tftpclient
