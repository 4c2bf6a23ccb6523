package recordio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func records() [][]byte {
	return [][]byte{
		[]byte(`{"type":"SUBSCRIBED"}`),
		{},
		[]byte("x"),
		[]byte("with\nnewlines\n12\n"),
		bytes.Repeat([]byte("abcdefgh"), 2000), // larger than bufio's and net/http's buffers
		[]byte("last"),
	}
}

func encode(t testing.TB, recs [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func readAll(r *Reader) ([][]byte, error) {
	var out [][]byte
	for {
		b, err := r.ReadRecord()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, b)
	}
}

func TestWriterFormat(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, s := range []string{"hello", "", "{}"} {
		if err := w.WriteRecord([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := buf.String(), "5\nhello0\n2\n{}"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// countingWriter records each Write call and Flush so tests can check that a
// record goes out in one piece.
type countingWriter struct {
	writes  [][]byte
	flushes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *countingWriter) Flush() error { c.flushes++; return nil }

func TestWriterSingleWriteAndFlush(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw)
	for _, r := range records() {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(cw.writes) != len(records()) || cw.flushes != len(records()) {
		t.Fatalf("got %d writes and %d flushes for %d records", len(cw.writes), cw.flushes, len(records()))
	}
	for i, r := range records() {
		want := append([]byte(strconv.Itoa(len(r))+"\n"), r...)
		if !bytes.Equal(cw.writes[i], want) {
			t.Errorf("write %d = %.40q..., want %.40q...", i, cw.writes[i], want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestWriterError(t *testing.T) {
	err := NewWriter(failWriter{}).WriteRecord([]byte("x"))
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("got %v, want wrapped write error", err)
	}
}

func TestRoundTrip(t *testing.T) {
	data := encode(t, records())
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one-byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"chunk-3":  func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 3} },
		"chunk-7":  func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 7} },
		"chunk-4099": func(r io.Reader) io.Reader {
			return &chunkReader{r: r, n: 4099}
		},
		"data-err": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(NewReader(wrap(bytes.NewReader(data))))
			if err != nil {
				t.Fatal(err)
			}
			want := records()
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("record %d = %.40q, want %.40q", i, got[i], want[i])
				}
				if got[i] == nil {
					t.Errorf("record %d is nil, want non-nil empty slice", i)
				}
			}
		})
	}
}

// chunkReader returns at most n bytes per Read, to split records and length
// prefixes at odd places.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

func TestReaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		records int    // records read successfully before the error
		is      error  // errors.Is target, if any
		msg     string // substring of the error, if any
	}{
		{name: "empty stream", in: "", is: io.EOF},
		{name: "eof in prefix", in: "12", is: io.ErrUnexpectedEOF},
		{name: "eof in payload", in: "5\nabc", is: io.ErrUnexpectedEOF},
		{name: "eof after prefix", in: "5\n", is: io.ErrUnexpectedEOF},
		{name: "eof in second record", in: "1\na3\nab", records: 1, is: io.ErrUnexpectedEOF},
		{name: "clean end", in: "1\na2\nab", records: 2, is: io.EOF},
		{name: "empty prefix", in: "\nabc", msg: "empty record length"},
		{name: "letters", in: "1x\nabc", msg: `invalid character 'x'`},
		{name: "negative", in: "-1\n", msg: `invalid character '-'`},
		{name: "space", in: " 1\na", msg: `invalid character ' '`},
		{name: "hex", in: "0x1\na", msg: `invalid character 'x'`},
		{name: "carriage return", in: "1\r\na", msg: `invalid character '\r'`},
		{name: "too long", in: strings.Repeat("1", 20) + "\n", msg: "longer than 19 digits"},
		{name: "overflow-sized", in: "18446744073709551615\n", msg: "longer than 19 digits"},
		{name: "oversize default", in: "67108865\n", msg: "record of 67108865 bytes exceeds the maximum of 67108864 bytes"},
		{name: "oversize option", in: "3\nabc11\n", max: 10, records: 1, msg: "record of 11 bytes exceeds the maximum of 10 bytes"},
		{name: "max exactly", in: "10\n0123456789", max: 10, records: 1, is: io.EOF},
		{name: "garbage after record", in: "1\nab", records: 1, msg: `invalid character 'b'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []ReaderOption
			if tt.max != 0 {
				opts = append(opts, MaxRecordSize(tt.max))
			}
			r := NewReader(strings.NewReader(tt.in), opts...)
			got, err := readAll(r)
			if tt.is == io.EOF {
				if err != nil {
					t.Fatalf("got error %v, want clean EOF", err)
				}
			} else if err == nil {
				t.Fatalf("got no error, want one")
			}
			if len(got) != tt.records {
				t.Errorf("read %d records before error, want %d", len(got), tt.records)
			}
			if tt.is != nil && tt.is != io.EOF && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want %v", err, tt.is)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want it to contain %q", err, tt.msg)
			}
			// Errors are sticky.
			if _, err2 := r.ReadRecord(); tt.is != io.EOF && !errors.Is(err2, err) {
				t.Errorf("second ReadRecord = %v, want %v again", err2, err)
			}
		})
	}
}

// A peer that announces a huge record and then stalls must not make the
// reader allocate the announced size up front.
func TestReaderLargeAnnouncedRecordAllocatesLazily(t *testing.T) {
	in := io.MultiReader(strings.NewReader("60000000\nabc"), iotest.ErrReader(errors.New("stalled")))
	r := NewReader(in)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.ReadRecord()
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("got %v, want stalled error", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
		t.Errorf("allocated %d bytes for a stalled 60MB record, want lazy growth", d)
	}
}

func TestReaderLargeRecord(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 3<<20+17) // crosses the eager allocation limit
	data := encode(t, [][]byte{big, []byte("after")})
	got, err := readAll(NewReader(&chunkReader{r: bytes.NewReader(data), n: 65521}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], big) || string(got[1]) != "after" {
		t.Fatalf("large record round trip failed: %d records", len(got))
	}
}

func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	var wg sync.WaitGroup
	const goroutines, each = 8, 200
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				rec := bytes.Repeat([]byte{byte('a' + g)}, i%50)
				if err := w.WriteRecord(rec); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := readAll(NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != goroutines*each {
		t.Fatalf("got %d records, want %d", len(got), goroutines*each)
	}
	for i, r := range got {
		if len(r) > 0 && bytes.Count(r, r[:1]) != len(r) {
			t.Fatalf("record %d interleaved: %q", i, r)
		}
	}
}

// TestHTTPChunkPerRecord reads a real chunked HTTP/1.1 response off the wire
// and checks that every chunk is exactly one whole record, as COMPAT requires.
func TestHTTPChunkPerRecord(t *testing.T) {
	recs := records()
	recs = recs[:0:0]
	for _, r := range records() {
		if len(r) > 0 { // a zero-length chunk would end the chunked body
			recs = append(recs, r)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		rw := NewWriter(w)
		for _, rec := range recs {
			if err := rw.WriteRecord(rec); err != nil {
				t.Error(err)
				return
			}
		}
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

	br := bufio.NewReader(conn)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("status %q", status)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Get("Transfer-Encoding") != "chunked" || hdr.Get("Content-Length") != "" {
		t.Fatalf("want chunked response without Content-Length, got %v", hdr)
	}

	var chunks [][]byte
	for {
		line, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		size, err := strconv.ParseUint(line, 16, 32)
		if err != nil {
			t.Fatalf("chunk size %q: %v", line, err)
		}
		if size == 0 {
			break
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		if string(chunk[size:]) != "\r\n" {
			t.Fatalf("chunk not terminated by CRLF")
		}
		chunks = append(chunks, chunk[:size])
	}
	if len(chunks) != len(recs) {
		t.Fatalf("got %d chunks for %d records", len(chunks), len(recs))
	}
	for i, c := range chunks {
		r := NewReader(bytes.NewReader(c))
		got, err := r.ReadRecord()
		if err != nil {
			t.Fatalf("chunk %d is not a whole record: %v", i, err)
		}
		if !bytes.Equal(got, recs[i]) {
			t.Fatalf("chunk %d holds the wrong record", i)
		}
		if _, err := r.ReadRecord(); err != io.EOF {
			t.Fatalf("chunk %d holds more than one record", i)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("5\nhello0\n2\n{}"), 16)
	f.Add([]byte("\n"), 0)
	f.Add([]byte("99999999999999999999\n"), 100)
	f.Add([]byte("3\nab"), 3)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		r := NewReader(bytes.NewReader(data), MaxRecordSize(max%4096))
		for range 1000 {
			b, err := r.ReadRecord()
			if err != nil {
				return
			}
			if len(b) > len(data) {
				t.Fatalf("record of %d bytes from %d bytes of input", len(b), len(data))
			}
		}
	})
}
