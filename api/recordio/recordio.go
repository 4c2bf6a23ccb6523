// Package recordio implements the RecordIO framing of Mesos' v1 streaming
// APIs: each record is its length in decimal ASCII, a newline, then the
// record bytes.
package recordio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// DefaultMaxRecordSize bounds a record when NewReader gets no MaxRecordSize
// option. It is far above any real Mesos message yet keeps a corrupt or hostile
// length prefix from making us allocate gigabytes.
const DefaultMaxRecordSize = 64 << 20

// maxPrefixDigits is the longest length prefix accepted; 19 digits cover every
// int64, so anything longer cannot be a sane length.
const maxPrefixDigits = 19

// Writer writes RecordIO records. It is safe for concurrent use: records from
// different goroutines never interleave.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer that frames records onto w. If w can be flushed
// (an http.ResponseWriter, http.Flusher or interface{ Flush() error }), every
// record is flushed as soon as it is written.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// maxRetainedBuf caps the scratch buffer kept between records, so one huge
// record does not pin its memory for the life of the stream.
const maxRetainedBuf = 64 << 10

// WriteRecord writes b as one record and flushes it.
//
// The prefix and payload go to the underlying writer in a single Write, and a
// flush follows at once: on a chunked HTTP response that makes each record
// exactly one chunk, which some Mesos clients rely on (they parse chunk by
// chunk and fail on split or merged records).
func (w *Writer) WriteRecord(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()

	buf := strconv.AppendInt(w.buf[:0], int64(len(b)), 10)
	buf = append(buf, '\n')
	buf = append(buf, b...)
	if cap(buf) <= maxRetainedBuf {
		w.buf = buf
	}
	if _, err := w.w.Write(buf); err != nil {
		return fmt.Errorf("recordio: write record: %w", err)
	}
	if err := flush(w.w); err != nil {
		return fmt.Errorf("recordio: flush record: %w", err)
	}
	return nil
}

func flush(w io.Writer) error {
	switch f := w.(type) {
	case http.ResponseWriter:
		// ResponseController sees through middleware wrappers (Unwrap) and
		// reports flush errors, which a bare http.Flusher swallows. A writer
		// that cannot flush would silently merge records, so that is an error.
		return http.NewResponseController(f).Flush()
	case interface{ Flush() error }:
		return f.Flush()
	case http.Flusher:
		f.Flush()
	}
	return nil
}

// Reader reads RecordIO records.
type Reader struct {
	r   *bufio.Reader
	max int
	err error // sticky: after a framing error the stream is out of sync
}

// ReaderOption configures a Reader.
type ReaderOption func(*Reader)

// MaxRecordSize sets the largest record a Reader accepts, in bytes. A value
// below zero means DefaultMaxRecordSize.
func MaxRecordSize(n int) ReaderOption {
	return func(r *Reader) {
		if n < 0 {
			n = DefaultMaxRecordSize
		}
		r.max = n
	}
}

// NewReader returns a Reader that reads records from r.
func NewReader(r io.Reader, opts ...ReaderOption) *Reader {
	rd := &Reader{r: bufio.NewReader(r), max: DefaultMaxRecordSize}
	for _, o := range opts {
		o(rd)
	}
	return rd
}

// ReadRecord returns the next record. The returned slice is newly allocated
// and may be retained. It returns io.EOF only when the stream ends cleanly
// between records, and io.ErrUnexpectedEOF when it ends inside one. Any error
// is permanent: later calls return it again.
func (r *Reader) ReadRecord() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	b, err := r.readRecord()
	if err != nil {
		r.err = err
	}
	return b, err
}

func (r *Reader) readRecord() ([]byte, error) {
	n, err := r.readLength()
	if err != nil {
		return nil, err
	}
	if n > uint64(r.max) {
		return nil, fmt.Errorf("recordio: record of %d bytes exceeds the maximum of %d bytes", n, r.max)
	}
	return r.readPayload(int(n))
}

func (r *Reader) readLength() (uint64, error) {
	var n uint64
	digits := 0
	for {
		c, err := r.r.ReadByte()
		if err == io.EOF {
			if digits == 0 {
				return 0, io.EOF
			}
			return 0, io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, fmt.Errorf("recordio: read length: %w", err)
		}
		switch {
		case c == '\n':
			if digits == 0 {
				return 0, errors.New("recordio: empty record length")
			}
			return n, nil
		case c < '0' || c > '9':
			return 0, fmt.Errorf("recordio: invalid character %q in record length", c)
		}
		digits++
		if digits > maxPrefixDigits {
			return 0, fmt.Errorf("recordio: record length longer than %d digits", maxPrefixDigits)
		}
		// 19 digits fit in a uint64, so this cannot overflow.
		n = n*10 + uint64(c-'0')
	}
}

// eagerAlloc is the largest payload allocated in full before its bytes arrive.
// Bigger ones grow as data comes in, so a peer that announces a huge record
// and then stalls cannot make us reserve the whole size.
const eagerAlloc = 1 << 20

func (r *Reader) readPayload(n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, eagerAlloc))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), n-len(buf)))
		}
		m, err := r.r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if len(buf) == n {
			break
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fmt.Errorf("recordio: read record: %w", err)
		}
	}
	return buf, nil
}
