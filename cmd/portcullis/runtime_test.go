package main

import "testing"

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
	}{
		{"v2 bytes", "536870912\n", 512 << 20},
		{"v2 none", "max\n", 0},
		{"v1 none", "9223372036854771712\n", 0},
		{"empty", "", 0},
		{"garbage", "lots", 0},
		{"zero", "0", 0},
	} {
		if got := cgroupLimit(tc.in); got != tc.want {
			t.Errorf("%s: cgroupLimit(%q) = %d, want %d", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestMeminfoTotal(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
	}{
		{"linux", "MemTotal:       24567892 kB\nMemFree:         1234 kB\n", 24567892 << 10},
		{"not first", "Foo: 1 kB\nMemTotal: 1024 kB\n", 1 << 20},
		{"absent", "MemFree: 1 kB\n", 0},
		{"bad number", "MemTotal: x kB\n", 0},
		{"empty", "", 0},
	} {
		if got := meminfoTotal(tc.in); got != tc.want {
			t.Errorf("%s: meminfoTotal = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestMemoryAvailableOnThisHost: the host's figure is readable here (Linux CI), so a serving
// node gets a soft memory limit and the higher GOGC.
func TestMemoryAvailableOnThisHost(t *testing.T) {
	if readSmall("/proc/meminfo") == "" {
		t.Skip("no /proc/meminfo")
	}
	if got := memoryAvailable(); got <= 0 {
		t.Fatalf("memoryAvailable() = %d on a host with /proc/meminfo", got)
	}
}
