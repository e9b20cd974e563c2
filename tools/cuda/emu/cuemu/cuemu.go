//go:build cuda

// Package cuemu reaches the test hooks of the emulated CUDA driver
// (tools/cuda/emu/driver): its counters of launches, copies and
// synchronisations, its injected faults and its memory size. Tests of the
// cuda build import it; a binary running on the real driver sees
// Available() == false. Never imported by shipped code.
package cuemu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef int (*stats_fn)(unsigned long long *, int);
typedef int (*set_fail_fn)(const char *, int);
typedef unsigned long long (*set_mem_fn)(unsigned long long);

static void *sym(const char *name) { return dlsym(RTLD_DEFAULT, name); }
static int call_stats(void *f, unsigned long long *out, int n) { return ((stats_fn)f)(out, n); }
static int call_set_fail(void *f, const char *spec, int clear) { return ((set_fail_fn)f)(spec, clear); }
static unsigned long long call_set_mem(void *f, unsigned long long n) { return ((set_mem_fn)f)(n); }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Counters are the emulated driver's totals since the process started.
type Counters struct {
	Launches  int64 // cuLaunchKernel calls queued
	HtoD      int64 // host-to-device copies (cuMemcpyHtoD and …Async)
	DtoH      int64 // device-to-host copies
	DtoD      int64 // device-to-device copies
	Memsets   int64 // cuMemsetD32 calls
	Syncs     int64 // host waits: stream, context and event synchronisations
	Allocs    int64 // cuMemAlloc calls, failed ones included
	Frees     int64 // cuMemFree calls
	GEMMs     int64 // cuBLAS GEMM calls (a strided batch counts once)
	HtoDBytes int64 // bytes copied host to device
	DtoHBytes int64 // bytes copied device to host
}

// Sub is c − o, counter by counter.
func (c Counters) Sub(o Counters) Counters {
	return Counters{c.Launches - o.Launches, c.HtoD - o.HtoD, c.DtoH - o.DtoH, c.DtoD - o.DtoD,
		c.Memsets - o.Memsets, c.Syncs - o.Syncs, c.Allocs - o.Allocs, c.Frees - o.Frees,
		c.GEMMs - o.GEMMs, c.HtoDBytes - o.HtoDBytes, c.DtoHBytes - o.DtoHBytes}
}

func (c Counters) String() string {
	return fmt.Sprintf("%d launches, %d GEMMs, %d HtoD (%d B), %d DtoH (%d B), %d DtoD, %d memsets, %d syncs, %d allocs, %d frees",
		c.Launches, c.GEMMs, c.HtoD, c.HtoDBytes, c.DtoH, c.DtoHBytes, c.DtoD, c.Memsets, c.Syncs, c.Allocs, c.Frees)
}

// ErrNotEmulated reports that the process runs on a real CUDA driver.
var ErrNotEmulated = errors.New("cuemu: not running on the emulated CUDA driver")

func lookup(name string) unsafe.Pointer {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.sym(cs)
}

// Available reports whether the process runs on the emulated driver.
func Available() bool { return lookup("pancap_cuemu_stats") != nil }

// Stats returns the counters.
func Stats() (Counters, error) {
	f := lookup("pancap_cuemu_stats")
	if f == nil {
		return Counters{}, ErrNotEmulated
	}
	var v [11]C.ulonglong
	C.call_stats(f, &v[0], C.int(len(v)))
	return Counters{int64(v[0]), int64(v[1]), int64(v[2]), int64(v[3]), int64(v[4]), int64(v[5]),
		int64(v[6]), int64(v[7]), int64(v[8]), int64(v[9]), int64(v[10])}, nil
}

// SetFail replaces the injected faults (PANCAP_CUEMU_FAIL's syntax: a comma
// list of alloc:N, launch:N, sticky:N counted from now; "" for none); with
// clear it also repairs a context broken by a sticky fault.
func SetFail(spec string, clear bool) error {
	f := lookup("pancap_cuemu_set_fail")
	if f == nil {
		return ErrNotEmulated
	}
	cs := C.CString(spec)
	defer C.free(unsafe.Pointer(cs))
	c := C.int(0)
	if clear {
		c = 1
	}
	if C.call_set_fail(f, cs, c) != 0 {
		return fmt.Errorf("cuemu: bad fault list %q", spec)
	}
	return nil
}

// SetMemory sets the emulated device's memory size and returns the bytes
// allocated now.
func SetMemory(bytes int64) (int64, error) {
	f := lookup("pancap_cuemu_set_mem")
	if f == nil {
		return 0, ErrNotEmulated
	}
	return int64(C.call_set_mem(f, C.ulonglong(bytes))), nil
}
