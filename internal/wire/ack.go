package wire

// ParseAck returns the block number of an ACK packet (RFC 1350 section 5):
//
//	 2 bytes     2 bytes
//	---------------------
//	| Opcode |   Block #  |
//	---------------------
//
// Block 0 acknowledges a WRQ or an OACK. It returns
// [ErrShort] for fewer than [HeaderSize] bytes and [ErrOpcode] for any
// opcode but ACK. Bytes after the block number are ignored.
func ParseAck(b []byte) (block uint16, err error) {
	return header(b, OpACK, errNotAck)
}

// AppendAck appends an ACK packet (layout at [ParseAck]).
func AppendAck(b []byte, block uint16) []byte {
	return appendHeader(b, OpACK, block)
}
