package mesos_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/corral/corral/api/v1/executor"
	"github.com/corral/corral/api/v1/master"
	"github.com/corral/corral/api/v1/mesos"
	"github.com/corral/corral/api/v1/scheduler"
)

// Spot checks of facts that Mesos clients depend on. Each value was checked
// against Mesos' v1 protos; a failure here means a wire-incompatible edit.

func TestFieldWireFacts(t *testing.T) {
	tests := []struct {
		msg    protoreflect.MessageDescriptor
		field  protoreflect.Name
		number protoreflect.FieldNumber
		kind   protoreflect.Kind
		card   protoreflect.Cardinality
		def    any // nil: no proto2 default
	}{
		{(&mesos.TaskStatus{}).ProtoReflect().Descriptor(), "uuid", 11, protoreflect.BytesKind, protoreflect.Optional, nil},
		{(&mesos.TaskStatus{}).ProtoReflect().Descriptor(), "reason", 10, protoreflect.EnumKind, protoreflect.Optional, nil},
		{(&mesos.TaskStatus{}).ProtoReflect().Descriptor(), "task_id", 1, protoreflect.MessageKind, protoreflect.Required, nil},
		{(&mesos.TaskInfo{}).ProtoReflect().Descriptor(), "executor", 5, protoreflect.MessageKind, protoreflect.Optional, nil},
		{(&mesos.TaskInfo{}).ProtoReflect().Descriptor(), "limits", 15, protoreflect.MessageKind, protoreflect.Repeated, nil},
		{(&mesos.Offer{}).ProtoReflect().Descriptor(), "url", 8, protoreflect.MessageKind, protoreflect.Optional, nil},
		{(&mesos.Filters{}).ProtoReflect().Descriptor(), "refuse_seconds", 1, protoreflect.DoubleKind, protoreflect.Optional, 5.0},
		{(&mesos.FrameworkInfo{}).ProtoReflect().Descriptor(), "role", 6, protoreflect.StringKind, protoreflect.Optional, "*"},
		{(&mesos.FrameworkInfo{}).ProtoReflect().Descriptor(), "roles", 12, protoreflect.StringKind, protoreflect.Repeated, nil},
		{(&mesos.CommandInfo{}).ProtoReflect().Descriptor(), "shell", 6, protoreflect.BoolKind, protoreflect.Optional, true},
		{(&mesos.AgentInfo{}).ProtoReflect().Descriptor(), "port", 8, protoreflect.Int32Kind, protoreflect.Optional, int32(5051)},
		{(&mesos.MasterInfo{}).ProtoReflect().Descriptor(), "port", 3, protoreflect.Uint32Kind, protoreflect.Required, uint32(5050)},
		{(&mesos.HealthCheck{}).ProtoReflect().Descriptor(), "consecutive_failures", 5, protoreflect.Uint32Kind, protoreflect.Optional, uint32(3)},
		{(&mesos.ResourceStatistics{}).ProtoReflect().Descriptor(), "mem_rss_bytes", 5, protoreflect.Uint64Kind, protoreflect.Optional, nil},
		{(&scheduler.Call{}).ProtoReflect().Descriptor(), "update_framework", 19, protoreflect.MessageKind, protoreflect.Optional, nil},
		{(&scheduler.Event_Subscribed{}).ProtoReflect().Descriptor(), "heartbeat_interval_seconds", 2, protoreflect.DoubleKind, protoreflect.Optional, nil},
		{(&executor.Call_Message{}).ProtoReflect().Descriptor(), "data", 2, protoreflect.BytesKind, protoreflect.Required, nil},
		{(&master.Response{}).ProtoReflect().Descriptor(), "get_state", 9, protoreflect.MessageKind, protoreflect.Optional, nil},
	}
	for _, tt := range tests {
		name := string(tt.msg.FullName()) + "." + string(tt.field)
		f := tt.msg.Fields().ByName(tt.field)
		if f == nil {
			t.Errorf("%s: no such field", name)
			continue
		}
		if f.Number() != tt.number {
			t.Errorf("%s: number %d, want %d", name, f.Number(), tt.number)
		}
		if f.Kind() != tt.kind {
			t.Errorf("%s: kind %v, want %v", name, f.Kind(), tt.kind)
		}
		if f.Cardinality() != tt.card {
			t.Errorf("%s: cardinality %v, want %v", name, f.Cardinality(), tt.card)
		}
		switch {
		case tt.def == nil && f.HasDefault():
			t.Errorf("%s: unexpected default %v", name, f.Default().Interface())
		case tt.def != nil && !f.HasDefault():
			t.Errorf("%s: no default, want %v", name, tt.def)
		case tt.def != nil && f.Default().Interface() != tt.def:
			t.Errorf("%s: default %v (%T), want %v (%T)", name, f.Default().Interface(), f.Default().Interface(), tt.def, tt.def)
		}
	}
}

func TestEnumWireFacts(t *testing.T) {
	tests := []struct {
		enum   protoreflect.EnumDescriptor
		value  protoreflect.Name
		number protoreflect.EnumNumber
	}{
		{mesos.TaskState(0).Descriptor(), "TASK_STARTING", 0},
		{mesos.TaskState(0).Descriptor(), "TASK_STAGING", 6},
		{mesos.TaskState(0).Descriptor(), "TASK_ERROR", 7},
		{mesos.TaskState(0).Descriptor(), "TASK_KILLING", 8},
		{mesos.TaskState(0).Descriptor(), "TASK_GONE_BY_OPERATOR", 12},
		{mesos.TaskStatus_Reason(0).Descriptor(), "REASON_COMMAND_EXECUTOR_FAILED", 0},
		{mesos.TaskStatus_Reason(0).Descriptor(), "REASON_CONTAINER_LIMITATION_MEMORY", 8},
		{mesos.TaskStatus_Reason(0).Descriptor(), "REASON_CONTAINER_LIMITATION_DISK", 20},
		{mesos.TaskStatus_Reason(0).Descriptor(), "REASON_RECONCILIATION", 9},
		{mesos.TaskStatus_Source(0).Descriptor(), "SOURCE_EXECUTOR", 2},
		{mesos.Offer_Operation_Type(0).Descriptor(), "LAUNCH_GROUP", 6},
		{mesos.Offer_Operation_Type(0).Descriptor(), "GROW_VOLUME", 11},
		{mesos.Value_Type(0).Descriptor(), "SCALAR", 0},
		{mesos.CapabilityInfo_Capability(0).Descriptor(), "SYS_ADMIN", 1021},
		{scheduler.Call_Type(0).Descriptor(), "UPDATE_FRAMEWORK", 17},
		{scheduler.Call_Type(0).Descriptor(), "ACKNOWLEDGE_OPERATION_STATUS", 15},
		{scheduler.Event_Type(0).Descriptor(), "HEARTBEAT", 8},
		{scheduler.Event_Type(0).Descriptor(), "UPDATE_OPERATION_STATUS", 11},
		{executor.Event_Type(0).Descriptor(), "LAUNCH_GROUP", 8},
		{master.Call_Type(0).Descriptor(), "GET_STATE", 9},
		{master.Response_Type(0).Descriptor(), "GET_STATE", 8},
	}
	for _, tt := range tests {
		v := tt.enum.Values().ByName(tt.value)
		if v == nil {
			t.Errorf("%s.%s: no such value", tt.enum.FullName(), tt.value)
			continue
		}
		if v.Number() != tt.number {
			t.Errorf("%s.%s = %d, want %d", tt.enum.FullName(), tt.value, v.Number(), tt.number)
		}
	}
}
