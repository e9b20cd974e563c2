package weights

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on x86-64 and arm64.
const hugePage = 2 << 20

// residentChunk is how much readResident reads between two looks at its
// context: ~10 ms of disk or page cache.
const residentChunk = 64 << 20

// readResident reads the whole file at path into anonymous memory aligned
// to huge pages, asks the kernel to back it with them (MADV_HUGEPAGE), makes
// it read-only and drops the file's pages from the page cache. Weights that
// every decode step streams then cost one TLB entry per 2 MiB instead of per
// 4 KiB and are not file pages the kernel may reclaim or scan: on the bench
// preset, a 3–6% shorter decode step at batch 1 (docs/notes/cpu-kernels.md).
// The returned release function unmaps it. The read stops with ctx's error
// between chunks once ctx is done.
func readResident(ctx context.Context, path string) ([]byte, func() error, error) {
	return loadFile(path, math.MaxInt-2*hugePage, "read into memory", func(f *os.File, size int) ([]byte, func() error, error) {
		n := (size + hugePage - 1) / hugePage * hugePage
		raw, err := unix.Mmap(-1, 0, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil, nil, fmt.Errorf("weights: %d bytes of memory for %s: %w", n, path, err)
		}
		release := func() error { return unix.Munmap(raw) }
		off := (hugePage - int(uintptr(unsafe.Pointer(&raw[0]))%hugePage)) % hugePage
		buf := raw[off : off+n]
		_ = unix.Madvise(buf, unix.MADV_HUGEPAGE) // advice: kernels without THP ignore or refuse it
		data := buf[:size]
		for off := 0; off < size; off += residentChunk {
			if err := ctx.Err(); err != nil {
				release()
				return nil, nil, fmt.Errorf("weights: read %s: %w", path, err)
			}
			if _, err := io.ReadFull(f, data[off:min(off+residentChunk, size)]); err != nil {
				release()
				return nil, nil, fmt.Errorf("weights: read %s: %w", path, err)
			}
		}
		if err := unix.Mprotect(buf, unix.PROT_READ); err != nil {
			release()
			return nil, nil, fmt.Errorf("weights: protect %s: %w", path, err)
		}
		_ = unix.Fadvise(int(f.Fd()), 0, int64(size), unix.FADV_DONTNEED) // the copy is ours now
		return data, release, nil
	})
}
