package testsupport

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	n := 0
	Eventually(t, "the third poll", 10*time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("polled %d times, want 3 (it stops once the condition holds)", n)
	}
}

// fatalTB records a Fatalf and ends the goroutine as testing.T's does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestEventuallyFailsNamingWhatItWaitedFor(t *testing.T) {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		Eventually(f, "the impossible", 50*time.Millisecond, func() bool { return false })
	}()
	if !strings.Contains(f.msg, "the impossible") {
		t.Errorf("failure %q does not name what was awaited", f.msg)
	}
}
