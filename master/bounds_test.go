package master_test

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// The attack of issue 14: twelve SUBSCRIBEs with a 63 MB framework name
// took the master from 17 MB to 2.4 GB. Each is now refused with a 400
// that names the limit, and the master keeps nothing of them.
func TestHugeFrameworkNamesDoNotGrowTheMaster(t *testing.T) {
	tm := startMaster(t)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	client := &http.Client{Timeout: time.Minute}
	for range 12 {
		body, err := proto.Marshal(&scheduler.Call{
			Type: scheduler.Call_SUBSCRIBE.Enum(),
			Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{
				User: proto.String("intruder"), Name: proto.String(strings.Repeat("n", 63<<20)),
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, tm.url("/api/v1/scheduler"), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "'framework_info.name' is 66060288 bytes, more than the limit of 1024") {
			t.Fatalf("SUBSCRIBE with a 63 MB name: %d %q, want 400 naming the limit", resp.StatusCode, msg)
		}
	}
	if grown := int64(heap()) - int64(before); grown > 64<<20 {
		t.Fatalf("the master's heap grew by %d MiB over the refused SUBSCRIBEs", grown>>20)
	}
	resp, err := client.Get(tm.url("/state"))
	if err != nil {
		t.Fatal(err)
	}
	state, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(state) > 1<<20 {
		t.Fatalf("/state is %d bytes after the refused SUBSCRIBEs", len(state))
	}
}
