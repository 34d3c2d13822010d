package wire

// ParseData returns the block number and payload of a DATA packet
// (RFC 1350 section 5):
//
//	 2 bytes     2 bytes      n bytes
//	----------------------------------
//	| Opcode |   Block #  |   Data     |
//	----------------------------------
//
// n is the block size, or less for the last block of a transfer. The
// payload is a view into b. It returns [ErrShort] for fewer than
// [HeaderSize] bytes and [ErrOpcode] for any opcode but DATA. The payload
// length is not checked against a block size: that is the session's job.
func ParseData(b []byte) (block uint16, payload []byte, err error) {
	block, err = header(b, OpDATA, errNotData)
	if err != nil {
		return 0, nil, err
	}
	return block, b[HeaderSize:], nil
}

// AppendDataHeader appends the opcode and block number of a DATA packet
// (layout at [ParseData]), for a caller that writes the payload into the
// buffer itself.
func AppendDataHeader(b []byte, block uint16) []byte {
	return appendHeader(b, OpDATA, block)
}

// AppendData appends a DATA packet carrying payload (layout at [ParseData]).
func AppendData(b []byte, block uint16, payload []byte) []byte {
	return append(AppendDataHeader(b, block), payload...)
}
