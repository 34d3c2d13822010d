// Package upload stores the files TFTP clients upload (write requests,
// WRQ): [Dir] is a [gateway.WriteHandler] that writes them under a
// directory, atomically, and [Policy] decides which uploads reach it, how
// large they may be and where they go.
//
//	p := &upload.Policy{
//		Allow:   []string{"configs/**", "logs/*.txt"},
//		MaxSize: 16 << 20,
//		Path:    "{client_ip}/{path}",
//	}
//	if err := p.Validate(); err != nil {
//		return err // names the field: `upload: Allow[0] "[": bad pattern`
//	}
//	srv := &gateway.Server{
//		Handler:      gateway.FileServer(root),
//		WriteHandler: p.Wrap(&upload.Dir{Root: "/srv/tftp-uploads"}),
//	}
//
// # Storing
//
// [Dir] never writes outside its Root: every filesystem operation goes
// through an os.Root, so neither a ".." element nor a symbolic link can
// lead out of it (a relative link that stays inside is followed; an
// absolute one is refused). Missing parent directories are created (mode
// 0755) inside the root.
//
// The bytes go to a temporary file in the target's directory, named
// ".NAME.RANDOM.tftpgw-upload", which nothing else uses: a name ending in
// ".tftpgw-upload" cannot be uploaded. Only [gateway.Upload]'s Commit,
// once every byte has arrived, flushes and fsyncs it and gives it its
// name, in one step: a hard link (create-only, the default: it fails if
// the name exists) or a rename over the old file (Dir.Overwrite). Then
// the directory is fsynced. So the name holds either nothing, the old
// file or the whole new one, never part of it, even if the process or the
// machine dies; what such a death can leave is a temporary file, which
// may be removed (find ROOT -name '.*.tftpgw-upload' -mmin +60 -delete).
// Abort removes the temporary file.
//
// In create-only mode an upload of a name that exists is refused with
// ERROR 6 "file already exists" before the client sends any data, and,
// if another upload stored the name meanwhile, at Commit: of concurrent
// uploads of one new name exactly one is stored. An existing directory at
// the name is refused with ERROR 2, as is, in overwrite mode, anything
// but a regular file (a symbolic link is neither followed nor replaced).
// A full disk or quota is ERROR 3.
//
// # Policy
//
// A [Policy] wraps a write handler (Dir or any other, a gRPC backend's
// for example) with three checks, made in this order before the next
// handler is called:
//
//   - Allow: the normalised path, as the client asked for it, must match
//     one of these patterns, in the syntax of
//     github.com/bmatcuk/doublestar: "*" and "?" within one path element,
//     "**" across elements, [a-z] and {a,b}. No pattern, no upload: the
//     client gets [gateway.ErrUploadRefused] (ERROR 2).
//   - MaxSize: an upload whose declared size (the tsize option, RFC 2349)
//     is over MaxSize gets [gateway.ErrUploadTooLarge] (ERROR 3) at once;
//     one that declared less, or nothing, gets it at the first Write that
//     passes MaxSize, and the next handler never sees those bytes. (A
//     gateway.Server writes an upload in batches of up to 32 KiB, so a
//     client may have sent up to that much beyond the limit when it is
//     told.) A tsize that is not a decimal number is ignored.
//   - Path: where the upload is stored, a template (see [Policy.Path])
//     that can put each client's uploads in a directory of its own. The
//     result is cleaned with [gateway.CleanPath]; one that would climb
//     out of the root is refused. The request's Path is set to it, so
//     the server reports it as the session's rewritten path.
package upload
