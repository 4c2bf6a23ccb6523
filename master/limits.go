package master

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/corral/corral/api/v1/mesos"
)

// Bounds on what the master keeps of what its callers send. A request body
// may be up to httpapi.MaxBodySize, but nothing the master holds for
// longer than the call grows with it: a framework registering with a name
// of 63 MB, twelve times over, must not cost the master gigabytes of
// memory (nor make /state that large). The limits are far above what real
// frameworks send.
const (
	// maxNameBytes bounds names and identities: framework and task names,
	// user, principal, hostname, each role.
	maxNameBytes = 1 << 10
	// maxRoles bounds a MULTI_ROLE framework's roles.
	maxRoles = 1 << 10
	// maxLabelsBytes bounds a framework's or a task's labels, encoded.
	maxLabelsBytes = 64 << 10
	// maxFrameworkInfoBytes bounds a whole FrameworkInfo, encoded.
	maxFrameworkInfoBytes = 256 << 10
	// maxKeptTaskBytes bounds a task as the master keeps it (its TaskInfo
	// without data, which only its executor needs), encoded.
	maxKeptTaskBytes = 1 << 20
	// maxKeptMessageBytes bounds the message of a status the master keeps
	// for /state; the framework gets the update whole.
	maxKeptMessageBytes = 4 << 10
	// maxKeptStatuses is how many of a task's statuses the master keeps.
	maxKeptStatuses = 10
)

// errTooLong names a field over its limit.
func errTooLong(field string, n, limit int) error {
	return fmt.Errorf("'%s' is %d bytes, more than the limit of %d", field, n, limit)
}

// checkFrameworkInfoSize bounds what a SUBSCRIBE or UPDATE_FRAMEWORK asks
// the master to keep.
func checkFrameworkInfoSize(info *mesos.FrameworkInfo) error {
	for _, f := range []struct{ name, value string }{
		{"framework_info.name", info.GetName()},
		{"framework_info.user", info.GetUser()},
		{"framework_info.principal", info.GetPrincipal()},
		{"framework_info.hostname", info.GetHostname()},
		{"framework_info.role", info.GetRole()},
	} {
		if len(f.value) > maxNameBytes {
			return errTooLong(f.name, len(f.value), maxNameBytes)
		}
	}
	if n := len(info.GetRoles()); n > maxRoles {
		return fmt.Errorf("'framework_info.roles' has %d roles, more than the limit of %d", n, maxRoles)
	}
	for _, r := range info.GetRoles() {
		if len(r) > maxNameBytes {
			return errTooLong("framework_info.roles", len(r), maxNameBytes)
		}
	}
	if n := proto.Size(info.GetLabels()); n > maxLabelsBytes {
		return errTooLong("framework_info.labels", n, maxLabelsBytes)
	}
	if n := proto.Size(info); n > maxFrameworkInfoBytes {
		return errTooLong("framework_info", n, maxFrameworkInfoBytes)
	}
	return nil
}

// checkTaskSize bounds what the master will keep of a launched task: its
// name, its labels and its TaskInfo without data (keptTask), measured
// without copying it.
func checkTaskSize(ti *mesos.TaskInfo) error {
	if n := len(ti.GetName()); n > maxNameBytes {
		return errTooLong("task_info.name", n, maxNameBytes)
	}
	if n := proto.Size(ti.GetLabels()); n > maxLabelsBytes {
		return errTooLong("task_info.labels", n, maxLabelsBytes)
	}
	if n := keptSize(ti); n > maxKeptTaskBytes {
		return errTooLong("task_info (without data)", n, maxKeptTaskBytes)
	}
	return nil
}

// keptSize is proto.Size(keptTask(ti)), without the copy.
func keptSize(ti *mesos.TaskInfo) int {
	n := proto.Size(ti)
	if ti.Data != nil {
		n -= protowire.SizeTag(taskInfoDataField) + protowire.SizeBytes(len(ti.Data))
	}
	return n
}

// taskInfoDataField is TaskInfo.data's field number.
const taskInfoDataField = 6

// keptTask is the TaskInfo the master keeps of a launch (checked by
// checkTaskSize): without data, as Mesos' master keeps none (MESOS-1746);
// the agent gets the TaskInfo whole.
func keptTask(ti *mesos.TaskInfo) *mesos.TaskInfo {
	if ti.Data == nil {
		return ti
	}
	kept := proto.Clone(ti).(*mesos.TaskInfo)
	kept.Data = nil
	return kept
}

// keptStatus is a task status as the master keeps it: without data (as
// Mesos' master) and with its message bounded.
func keptStatus(s *mesos.TaskStatus) *mesos.TaskStatus {
	if s.Data == nil && len(s.GetMessage()) <= maxKeptMessageBytes {
		return s
	}
	kept := proto.Clone(s).(*mesos.TaskStatus)
	kept.Data = nil
	if m := kept.GetMessage(); len(m) > maxKeptMessageBytes {
		kept.Message = proto.String(m[:maxKeptMessageBytes] + "… (cut at the master's limit)")
	}
	return kept
}

// keptStatuses are an agent's report of a task's statuses as the master
// keeps them: the last ten, each as keptStatus.
func keptStatuses(list []*mesos.TaskStatus) []*mesos.TaskStatus {
	if n := len(list); n > maxKeptStatuses {
		list = list[n-maxKeptStatuses:]
	}
	out := make([]*mesos.TaskStatus, len(list))
	for i, s := range list {
		out[i] = keptStatus(s)
	}
	return out
}
