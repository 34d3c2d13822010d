// Package gateway is a TFTP read server (RFC 1350) with option negotiation
// (RFC 2347), blksize (RFC 2348), timeout and tsize (RFC 2349) and
// windowsize (RFC 7440), built in the style of net/http.
//
// A [Server] listens on a UDP port and runs one session, on a goroutine and
// a socket of its own, per read request. For each request it calls a
// [Handler], which returns the [Content] to send: something to Read, with a
// Size when it is known (otherwise tsize is left out of the OACK), that the
// server Closes when the session ends. The server does the rest: option
// negotiation, windows, retransmission, block-number rollover, netascii,
// and errors. [FileServer] serves a directory confined with os.Root.
//
//	root, _ := os.OpenRoot("/srv/tftp")
//	srv := &gateway.Server{Addr: ":69", Handler: gateway.FileServer(root)}
//	log.Fatal(srv.ListenAndServe())
//
// A handler's error becomes a TFTP ERROR: [ErrorFor] documents the mapping,
// and a handler returns an [*Error] to choose the code and message itself.
//
// Every finished session is reported to [Server.SessionStatsFunc] with its
// [Outcome]: UEFI size probes and early terminations are told apart from
// failures. [Server.ServerStatsFunc] receives the server-wide counters
// every [Server.StatsInterval].
package gateway
