package disk

import (
	"testing"
	"unsafe"
)

// The quotactl and ioctl structures are the kernel's ABI: a wrong size
// would have the kernel write past them.
func TestQuotaABILayout(t *testing.T) {
	if s := unsafe.Sizeof(fsDiskQuota{}); s != 112 {
		t.Errorf("fs_disk_quota is %d bytes, want 112", s)
	}
	if o := unsafe.Offsetof(fsDiskQuota{}.BCount); o != 40 {
		t.Errorf("d_bcount at %d, want 40", o)
	}
	if o := unsafe.Offsetof(fsDiskQuota{}.RtbHardLimit); o != 72 {
		t.Errorf("d_rtb_hardlimit at %d, want 72", o)
	}
	if s := unsafe.Sizeof(fsQuotaStatV{}); s != 160 {
		t.Errorf("fs_quota_statv is %d bytes, want 160", s)
	}
	if s := unsafe.Sizeof(fsxattr{}); s != 28 {
		t.Errorf("fsxattr is %d bytes, want 28", s)
	}
	if o := unsafe.Offsetof(fsxattr{}.ProjID); o != 12 {
		t.Errorf("fsx_projid at %d, want 12", o)
	}
}
