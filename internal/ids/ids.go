// Package ids makes the identifiers Corral hands out: Mesos-style
// framework, agent and offer IDs and the 16-byte UUIDs of status updates.
package ids

import (
	"fmt"
	"sync/atomic"

	"github.com/google/uuid"
)

// UUID returns 16 random bytes (a version 4 UUID), the form TaskStatus.uuid
// takes on the wire.
func UUID() []byte {
	u := uuid.New()
	return u[:]
}

// String returns a version 4 UUID in its text form.
func String() string { return uuid.NewString() }

// FormatUUID renders 16 raw bytes as text, or the bytes' hex if not 16.
func FormatUUID(b []byte) string {
	u, err := uuid.FromBytes(b)
	if err != nil {
		return fmt.Sprintf("%x", b)
	}
	return u.String()
}

// Sequence issues IDs "<prefix><n>" as Mesos does ("<master>-0001",
// "<master>-S3", "<master>-O42").
type Sequence struct {
	prefix string
	format string
	n      atomic.Uint64
}

// NewSequence returns a sequence; format is a fmt verb for the number, e.g.
// "%04d" or "%d".
func NewSequence(prefix, format string) *Sequence {
	return &Sequence{prefix: prefix, format: format}
}

// Next returns the next ID.
func (s *Sequence) Next() string {
	return s.prefix + fmt.Sprintf(s.format, s.n.Add(1))
}
