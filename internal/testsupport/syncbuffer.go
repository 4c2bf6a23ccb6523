package testsupport

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer that a process's output and a test reading
// it may use at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n bytes written (all of it when shorter).
func (s *SyncBuffer) Tail(n int) string {
	str := s.String()
	if len(str) > n {
		str = str[len(str)-n:]
	}
	return str
}
