// Package rewrite rewrites the paths of TFTP read requests with an ordered
// list of regular-expression rules, as a [gateway.Middleware]: what
// tftp-hpa's remap file (-m), atftpd's --pcre patterns and the path
// handling of Windows Deployment Services do for their servers. Windows
// firmware sends backslashes and mixed case, legacy configurations ask
// for prefixes that no longer exist, and PXE clients expect files chosen
// by their address.
//
//	rw, err := rewrite.New([]rewrite.Rule{
//		{Match: `^/?boot/(.*)$`, Replace: "$1"},
//		{Match: `(?i)^pxelinux\.cfg/(.*)$`, Replace: "pxelinux.cfg/$1", Lowercase: true},
//		{Match: `^(.*)$`, Replace: "hosts/{client_ip}/$1", IfExists: true},
//		{Match: `\.\./|^secret/`, Deny: true},
//	})
//	if err != nil {
//		return err // names the rule: "rewrite: rule 2: ..."
//	}
//	h := gateway.Chain(gateway.FileServer(root), rw.Middleware())
//
// # How the rules run
//
// The rules run in order, each at most once per request, each on the path
// the rules before it made: there is no loop back to the first rule and no
// rule stops the others, except a refusal (tftp-hpa's remap rules without
// its "e" and "R" flags). The first rule sees [gateway.Request.Path], the
// path the server already normalised with [gateway.CleanPath]: relative,
// slash-separated, with no "." or ".." element.
//
// Match is a Go regular expression (RE2 syntax, see regexp/syntax),
// matched against the whole path but not anchored: write ^ and $ to
// match all of it, (?i) to ignore case. A rule whose regexp does not
// match leaves the path as it is and goes on to the next rule. When it
// matches, only the leftmost match is replaced (as sed's s/// and
// tftp-hpa's "r" without their "g" flag do; regexp.ReplaceAllString would
// replace every match): the text before and after it is kept, and the
// matched text is replaced by the expansion of Replace. An empty Replace
// deletes the matched text; "$0" puts it back.
//
// # Replace
//
// Replace is literal text with these substitutions:
//
//   - $1, ${1}, $name, ${name}: the text of a group of Match, empty if the
//     group took no part in the match, with the syntax of
//     [regexp.Regexp.Expand] ($name takes the longest run of letters,
//     digits and underscores: $1x is the group named "1x", so write ${1}x).
//     $0 is the whole match and $$ a dollar sign. New refuses a reference
//     to a group the regexp does not have, and a $ that starts no
//     reference.
//   - {client_ip}: the client's address: an IPv4 address in dotted
//     decimal (also when it arrived as an IPv4-mapped IPv6 address,
//     ::ffff:192.168.0.1), an IPv6 address in its RFC 5952 form, never
//     with a zone.
//   - {client_ip_hex}: the same address as upper-case hexadecimal digits,
//     8 for IPv4 (192.168.0.1 is C0A80001, the name PXELINUX looks for in
//     pxelinux.cfg/) and 32 for IPv6: tftp-hpa's \x.
//   - {{ and }}: a literal brace. New refuses any other {name}, such as
//     {client_mac}, and a brace on its own.
//
// Group references and placeholders are substituted in one pass over the
// Replace text, which New parses once: the text of a group and the value
// of a placeholder are copied as they are and never read again, so a
// client that asks for a file named "{client_ip}" or "$1" gets those
// characters, not a substitution.
//
// Lowercase folds the letters A to Z of the rule's whole result (the text
// kept around the match and the placeholders' values included: hex digits
// too) to a to z, for firmware that asks for PXELINUX.CFG/DEFAULT. Other
// bytes are left as they are, so that a name in another encoding than
// UTF-8 is never mangled.
//
// # Every result is cleaned
//
// After each rule its result is cleaned again with [gateway.CleanPath]
// (backslashes become slashes, repeated and leading slashes go, "." and
// ".." are resolved). A result that would climb above the root, is empty,
// or holds a NUL byte is refused with ERROR 2 "access violation": a
// rewrite never reaches outside the root, whatever the rule and the path
// (the handler, [gateway.FileServer] with its os.Root, would refuse it
// again anyway).
//
// # Deny
//
// A rule with Deny refuses a request whose path its regexp matches: the
// client is sent the rule's Error (ERROR 2 "access violation" if nil), no
// later rule runs and the next handler is never called. A deny rule sees
// the path the rules before it made, like any rule; it has no Replace,
// Lowercase or IfExists.
//
// # IfExists
//
// A rule with IfExists keeps its result only if content exists at it;
// otherwise the rule is skipped and the path goes on unchanged to the next
// rule. The next handler tells:
//
//  1. If it is a [gateway.StatHandler] and its StatContent for the result
//     succeeds, the content exists, and nothing was opened.
//  2. Otherwise (it is not a StatHandler, or StatContent failed, which
//     means only that it cannot tell without opening), its ServeTFTP is
//     called for the result: content means it exists; an error that
//     [gateway.ErrorFor] maps to ERROR 1 (file not found) means it does
//     not; any other error (access violation, a backend down, a
//     cancelled context) ends the request with that error.
//
// These checks are made with a copy of the request whose Path is the
// rule's result. A result equal to the path the rule was given is not
// checked at all: kept or skipped, the path would be the same.
//
// Content opened by a check is not opened twice: if no later rule changes
// the path, it is the request's answer, and the next handler is not
// called again; if a later rule changes the path (or refuses the request,
// or a check fails) it is closed at once, even if next panics. So a
// request whose IfExists rule finds its file costs one open of it, as one
// without rules does (and a stat before it if next is a StatHandler), and
// a request whose IfExists rule falls back costs a failed open (and a
// failed stat before it) and the open of the fallback.
//
// # The request
//
// The middleware sets Path of the [*gateway.Request] it was given to the
// rewritten path, in place, and calls the next handler with that same
// request, so that the server reports the path actually served in its log
// line and [gateway.SessionStats]. RawPath is never modified. When the
// request is refused or a check fails, Path is left at the path the rules
// had reached (the one a deny rule matched, or the last one before a
// result that escapes or a check that failed).
//
// A refusal is returned as a [*DeniedError], whose Unwrap gives the
// [*gateway.Error] that [gateway.ErrorFor], and so the client, sees; its
// text, for the server's log, names the rule.
//
// # With other middleware
//
// Put the rewriter in front of anything that looks at the path, the edge
// cache in particular, which keys its entries by Path: with the cache in
// front, the files a path is rewritten to for different clients would
// share one entry.
//
//	h := gateway.Chain(&cache.Handler{Next: gateway.FileServer(root)}, rw.Middleware())
//
// A [Rewriter] is immutable once made and safe for concurrent use. Its
// regular expressions and Replace texts are compiled once, by [New]; a
// request costs the regexp's own allocations (the match's indexes), one
// string per rule whose result differs from its input, and for each
// IfExists check a copy of the request.
package rewrite
