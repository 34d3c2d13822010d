package gatewaytest

import (
	"context"
	"io/fs"

	"github.com/tftpgw/tftpgw/gateway"
	"github.com/tftpgw/tftpgw/internal/wire"
)

// Packet builders, for what a [Client] sends and expects. Options are
// given as names and values, in pairs; a name without a value is left
// out.

// ReadRequest returns an RRQ packet for file in mode with opts.
func ReadRequest(file, mode string, opts ...string) []byte {
	return wire.AppendRequest(nil, wire.OpRRQ, file, mode, options(opts))
}

// WriteRequest returns a WRQ packet for file in mode with opts.
func WriteRequest(file, mode string, opts ...string) []byte {
	return wire.AppendRequest(nil, wire.OpWRQ, file, mode, options(opts))
}

// Data returns a DATA packet.
func Data(block uint16, payload []byte) []byte { return wire.AppendData(nil, block, payload) }

// Ack returns an ACK packet.
func Ack(block uint16) []byte { return wire.AppendAck(nil, block) }

// OACK returns an OACK packet with opts, in the order given.
func OACK(opts ...string) []byte { return wire.AppendOACK(nil, options(opts)) }

// ErrorPacket returns an ERROR packet.
func ErrorPacket(code uint16, msg string) []byte { return wire.AppendError(nil, code, msg) }

func options(kv []string) []wire.Option {
	var o []wire.Option
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, wire.Option{Name: kv[i], Value: kv[i+1]})
	}
	return o
}

// Abbrev returns b, or its first 64 bytes followed by "..." if it is
// longer: a packet short enough for a failure message.
func Abbrev(b []byte) []byte {
	if len(b) > 64 {
		return append(append([]byte{}, b[:64]...), "..."...)
	}
	return b
}

// Pattern returns n bytes that differ from one 512-byte block to the next,
// so that a block sent twice or out of place shows.
func Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/512)
	}
	return b
}

// Files is a [gateway.Handler] serving files from memory: the key is the
// request's cleaned path ([gateway.Request.Path]), the value the content.
// Other paths get [fs.ErrNotExist] (ERROR 1).
type Files map[string][]byte

// ServeTFTP implements [gateway.Handler].
func (f Files) ServeTFTP(_ context.Context, r *gateway.Request) (gateway.Content, error) {
	b, ok := f[r.Path]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return gateway.BytesContent(b), nil
}
