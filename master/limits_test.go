package master

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
)

func TestFrameworkInfoBounds(t *testing.T) {
	long := strings.Repeat("x", maxNameBytes+1)
	labels := &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("k"), Value: proto.String(strings.Repeat("v", maxLabelsBytes))}}}
	for _, c := range []struct {
		name   string
		change func(*mesos.FrameworkInfo)
		want   string // "" for none
	}{
		{"within the limits", func(*mesos.FrameworkInfo) {}, ""},
		{"name at the limit", func(fi *mesos.FrameworkInfo) { fi.Name = proto.String(long[1:]) }, ""},
		{"name over it", func(fi *mesos.FrameworkInfo) { fi.Name = proto.String(long) }, "'framework_info.name' is 1025 bytes, more than the limit of 1024"},
		{"principal", func(fi *mesos.FrameworkInfo) { fi.Principal = proto.String(long) }, "'framework_info.principal'"},
		{"a role", func(fi *mesos.FrameworkInfo) { fi.Roles = []string{"a", long} }, "'framework_info.roles' is 1025 bytes"},
		{"too many roles", func(fi *mesos.FrameworkInfo) { fi.Roles = make([]string, maxRoles+1) }, "more than the limit of 1024"},
		{"labels", func(fi *mesos.FrameworkInfo) { fi.Labels = labels }, "'framework_info.labels'"},
		{"the whole", func(fi *mesos.FrameworkInfo) { fi.WebuiUrl = proto.String(strings.Repeat("u", maxFrameworkInfoBytes)) }, "'framework_info' is"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fi := &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("n")}
			c.change(fi)
			err := checkFrameworkInfoSize(fi)
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// The master keeps no task's data (the agent gets it) and no status's;
// a kept status's message is cut at its limit.
func TestKeptTaskAndStatus(t *testing.T) {
	ti := &mesos.TaskInfo{Name: proto.String("t"), TaskId: &mesos.TaskID{Value: proto.String("t")}, Data: make([]byte, 8<<20)}
	if err := checkTaskSize(ti); err != nil {
		t.Fatalf("a task whose data is big: %v; data is not kept, so not bounded", err)
	}
	kept := keptTask(ti)
	if kept.Data != nil || ti.Data == nil || kept.GetName() != "t" {
		t.Fatalf("kept %v; want the task without its data, the launch's own untouched", kept)
	}
	if got, want := keptSize(ti), proto.Size(kept); got != want {
		t.Fatalf("kept size %d without copying, %d of the copy", got, want)
	}
	ti.Command = &mesos.CommandInfo{Value: proto.String(strings.Repeat("c", maxKeptTaskBytes-100))}
	if err := checkTaskSize(ti); err != nil {
		t.Fatalf("a task just under the kept limit: %v (kept size %d)", err, proto.Size(keptTask(ti)))
	}
	ti.Name = proto.String(strings.Repeat("n", maxNameBytes+1))
	if err := checkTaskSize(ti); err == nil || !strings.Contains(err.Error(), "'task_info.name'") {
		t.Fatalf("a task name over the limit: %v", err)
	}
	ti.Name, ti.Data = proto.String("t"), nil
	ti.Command = &mesos.CommandInfo{Value: proto.String(strings.Repeat("c", maxKeptTaskBytes))}
	if err := checkTaskSize(ti); err == nil || !strings.Contains(err.Error(), "'task_info (without data)'") {
		t.Fatalf("a task over the kept limit: %v", err)
	}

	s := &mesos.TaskStatus{State: mesos.TaskState_TASK_RUNNING.Enum(), Data: []byte("big"), Message: proto.String(strings.Repeat("m", maxKeptMessageBytes+100))}
	ks := keptStatus(s)
	if ks.Data != nil || len(ks.GetMessage()) > maxKeptMessageBytes+64 || s.Data == nil || ks.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("kept status: data %q, message of %d bytes; want no data, the message cut, the update itself untouched", ks.Data, len(ks.GetMessage()))
	}
	small := &mesos.TaskStatus{Message: proto.String("ok")}
	if keptStatus(small) != small {
		t.Fatal("a status within the limits is copied")
	}
}
