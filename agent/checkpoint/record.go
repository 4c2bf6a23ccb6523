package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"
)

// Every checkpoint file is made of framed records:
//
//	magic (1 byte, 0xC7) | kind (1) | payload length (4, little endian) |
//	CRC32C of the six bytes before it and the payload (4, little endian) |
//	payload
//
// A whole-file checkpoint is exactly one record of kindValue; an updates
// stream is a sequence of kindUpdate and kindAck records. The length lets a
// reader tell a record cut short (a write that never finished) from one
// that is complete; the CRC catches bytes that are wrong. The magic byte
// makes a zero-filled tail — what ext4 can leave after a power cut when the
// file's size reached the disk before its data — fail fast instead of
// parsing as an empty record with a zero CRC.
const (
	frameMagic  = 0xC7
	headerSize  = 10
	kindValue   = 1           // the single record of a whole file
	kindUpdate  = 2           // a cluster.StatusUpdate
	kindAck     = 3           // a mesos.v1.UUID acknowledging an update
	maxKind     = kindJournal // journal.go; only in meta/journal
	maxFrameLen = 1 << 30     // sanity bound; real records are kilobytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about a checkpoint that exists but
// cannot be trusted: torn, wrong CRC, unparsable, or naming the wrong IDs.
var ErrCorrupt = errors.New("corrupt checkpoint")

// CorruptError says which file is bad, where and why.
type CorruptError struct {
	Path   string
	Offset int64
	// Torn is set when the file ends inside a record: a write that did not
	// finish, rather than bytes that changed.
	Torn   bool
	Reason string
}

func (e *CorruptError) Error() string {
	what := "corrupt"
	if e.Torn {
		what = "torn"
	}
	return fmt.Sprintf("checkpoint %s: %s record at offset %d: %s", e.Path, what, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// frame returns payload framed as one record of kind.
func frame(kind byte, payload []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(payload))
	b = append(b, payload...)
	seal(b, kind)
	return b
}

// marshalFrame marshals m straight into a framed record, so the payload is
// not copied a second time.
func marshalFrame(kind byte, m proto.Message) ([]byte, error) {
	b := make([]byte, headerSize, headerSize+proto.Size(m))
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return nil, err
	}
	seal(b, kind)
	return b, nil
}

// seal fills in the header of b, whose payload follows headerSize bytes
// reserved for it.
func seal(b []byte, kind byte) {
	b[0], b[1] = frameMagic, kind
	binary.LittleEndian.PutUint32(b[2:6], uint32(len(b)-headerSize))
	crc := crc32.Update(0, castagnoli, b[:6])
	crc = crc32.Update(crc, castagnoli, b[headerSize:])
	binary.LittleEndian.PutUint32(b[6:10], crc)
}

// frameError is why parseFrame refused; torn means b ended inside the record.
type frameError struct {
	torn   bool
	reason string
}

// parseFrame decodes the record at the start of b. n is the record's total
// size. The payload aliases b.
func parseFrame(b []byte) (kind byte, payload []byte, n int, fe *frameError) {
	if len(b) < headerSize {
		// A short header could still be a torn header only if what is there
		// looks like one; a wrong magic byte is corruption either way.
		if len(b) > 0 && b[0] != frameMagic {
			return 0, nil, 0, &frameError{reason: fmt.Sprintf("bad magic byte %#x", b[0])}
		}
		return 0, nil, 0, &frameError{torn: true, reason: fmt.Sprintf("%d of %d header bytes", len(b), headerSize)}
	}
	if b[0] != frameMagic {
		return 0, nil, 0, &frameError{reason: fmt.Sprintf("bad magic byte %#x", b[0])}
	}
	kind = b[1]
	if kind == 0 || kind > maxKind {
		return 0, nil, 0, &frameError{reason: fmt.Sprintf("unknown record kind %d", kind)}
	}
	size := binary.LittleEndian.Uint32(b[2:6])
	if size > maxFrameLen {
		return 0, nil, 0, &frameError{reason: fmt.Sprintf("record length %d out of range", size)}
	}
	if uint64(len(b)-headerSize) < uint64(size) {
		return 0, nil, 0, &frameError{torn: true, reason: fmt.Sprintf("%d of %d payload bytes", len(b)-headerSize, size)}
	}
	payload = b[headerSize : headerSize+int(size)]
	crc := crc32.Update(0, castagnoli, b[:6])
	crc = crc32.Update(crc, castagnoli, payload)
	if want := binary.LittleEndian.Uint32(b[6:10]); crc != want {
		return 0, nil, 0, &frameError{reason: fmt.Sprintf("CRC32C %#08x, header says %#08x", crc, want)}
	}
	return kind, payload, headerSize + int(size), nil
}
