package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/model/llava"
)

// TestKVPool checks the pool's sizing: exact blocks, a byte budget (F32 and
// BF16), free memory, a context cut to what the pool holds, and the errors
// of a budget too small for one sequence or over the memory available.
func TestKVPool(t *testing.T) {
	tc := llava.TextConfig{Hidden: 64, Layers: 2, MaxPos: 4096}
	const bs = 16
	blockBytes := int64(2 * 2 * bs * 64 * 4)
	const gib = int64(1) << 30
	for _, c := range []struct {
		name         string
		opts         Options
		avail        int64
		bounded      bool
		blocks, ctx  int
		errFragments []string
	}{
		{name: "exact blocks", opts: Options{KVBlocks: 7}, avail: gib, bounded: true, blocks: 7, ctx: 7 * bs},
		{name: "exact blocks, unbounded", opts: Options{KVBlocks: 7}, avail: 0, blocks: 7, ctx: 7 * bs},
		{name: "bytes", opts: Options{KVBytes: 1000*blockBytes + 5}, avail: gib, bounded: true, blocks: 1000, ctx: 4096},
		{name: "bf16 bytes", opts: Options{KVBytes: 100*blockBytes + 5, KVDType: kernels.BF16}, avail: gib, bounded: true, blocks: 200, ctx: 200 * bs},
		{name: "free memory: 8 contexts", avail: gib, bounded: true, blocks: 8 * 256, ctx: 4096},
		// Half the memory holds 150 blocks of KV alone, 120 with a feature
		// row per position (64 × 4 bytes beside 2 layers × keys and values).
		{name: "free memory: half of it", avail: 300 * blockBytes, bounded: true, blocks: 120, ctx: 120 * bs},
		{name: "bytes below one sequence", opts: Options{KVBytes: 10 * blockBytes}, avail: gib, bounded: true,
			errFragments: []string{"--kv-cache-bytes 163840 holds 160 positions", "at least 528 (16 image tokens + 512)"}},
		{name: "free memory below one sequence", avail: 40 * blockBytes, bounded: true,
			errFragments: []string{"half the free memory, 320.0 KiB", "holds 256 positions"}},
		{name: "bytes over the memory available", opts: Options{KVBytes: 2 * gib}, avail: gib, bounded: true,
			errFragments: []string{"--kv-cache-bytes 2147483648 (2.0 GiB) exceeds the 1.0 GiB"}},
		{name: "bytes over the memory, unbounded", opts: Options{KVBytes: 2 * gib}, avail: gib, blocks: int(2 * gib / blockBytes), ctx: 4096},
		{name: "blocks over the memory available", opts: Options{KVBlocks: 1 << 40}, avail: gib, bounded: true,
			errFragments: []string{"1099511627776 blocks of 16384 bytes exceed the 1.0 GiB available"}},
		{name: "blocks overflowing int64", opts: Options{KVBlocks: 1 << 62}, avail: 0,
			errFragments: []string{"4611686018427387904 blocks of 16384 bytes overflow"}},
	} {
		blocks, ctx, err := kvPool(c.opts, bs, tc, 16, c.avail, c.bounded)
		if c.errFragments != nil {
			if !errors.Is(err, ErrKVCache) {
				t.Errorf("%s: error %v, want ErrKVCache", c.name, err)
				continue
			}
			for _, f := range c.errFragments {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("%s: error %q does not say %q", c.name, err, f)
				}
			}
			continue
		}
		if err != nil || blocks != c.blocks || ctx != c.ctx {
			t.Errorf("%s: %d blocks, context %d, %v; want %d, %d", c.name, blocks, ctx, err, c.blocks, c.ctx)
		}
	}
	for _, bs := range []int{0, MaxKVBlockSize + 1} {
		if _, _, err := kvPool(Options{}, bs, tc, 16, gib, true); !errors.Is(err, ErrKVCache) || !strings.Contains(err.Error(), "block size") {
			t.Errorf("block size %d: %v", bs, err)
		}
	}
}

// TestKVPoolHugeContext checks that the largest max_position_embeddings
// the config allows sizes the pool from the memory, not from the context:
// LLaMA-2-13B's geometry (0.78 MiB per position) with 16 GiB available
// gets a pool within 8 GiB and a context of what that holds.
func TestKVPoolHugeContext(t *testing.T) {
	tc := llava.TextConfig{Hidden: 5120, Layers: 40, MaxPos: MaxPositions}
	const avail = int64(16) << 30
	blocks, ctx, err := kvPool(Options{}, 16, tc, 576, avail, true)
	if err != nil {
		t.Fatal(err)
	}
	if pool := int64(blocks) * kvBlockBytes(tc, 16, 4); pool > avail/2 || ctx != blocks*16 || ctx < 4096 || ctx >= MaxPositions {
		t.Errorf("pool of %d blocks (%d bytes), context %d", blocks, pool, ctx)
	}
}

// TestAvailableMemory checks that the memory available is read as a
// plausible size on this machine.
func TestAvailableMemory(t *testing.T) {
	if n := availableMemory(); n <= 0 || n > 1<<50 {
		t.Errorf("available memory %d", n)
	}
	if room, ok := cgroupRoom("/proc/self/cgroup", "/sys/fs/cgroup"); ok && room < 0 {
		t.Errorf("cgroup room %d", room)
	}
}

// TestCgroupRoom reads fake cgroup trees: v2 with a limit on an ancestor
// tighter than the leaf's, v1 (memory controller listed with another), no
// limit ("max", v1's huge number), usage over the limit, and an unreadable
// /proc/self/cgroup.
func TestCgroupRoom(t *testing.T) {
	write := func(t *testing.T, path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		proc  string
		files map[string]string // under the fake /sys/fs/cgroup
		room  int64
		ok    bool
	}{
		{"v2, ancestor tighter", "0::/a/b\n", map[string]string{
			"a/memory.max": "1000\n", "a/memory.current": "600\n",
			"a/b/memory.max": "5000\n", "a/b/memory.current": "100\n"}, 400, true},
		{"v2, no limit", "0::/a\n", map[string]string{"a/memory.max": "max\n", "a/memory.current": "7\n"}, 0, false},
		{"v2, over the limit", "0::/\n", map[string]string{"memory.max": "10\n", "memory.current": "20\n"}, 0, true},
		{"v1", "5:cpu,memory:/x\n1:name=systemd:/\n", map[string]string{
			"memory/x/memory.limit_in_bytes": "8589934592\n", "memory/x/memory.usage_in_bytes": "1073741824\n",
			"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "5\n"}, 7 << 30, true},
		{"no memory controller", "3:cpu:/\n", nil, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "proc"), c.proc)
			for f, text := range c.files {
				write(t, filepath.Join(dir, "sys", f), text)
			}
			room, ok := cgroupRoom(filepath.Join(dir, "proc"), filepath.Join(dir, "sys"))
			if room != c.room && c.ok || ok != c.ok {
				t.Errorf("room %d, %v; want %d, %v", room, ok, c.room, c.ok)
			}
		})
	}
	if _, ok := cgroupRoom(filepath.Join(t.TempDir(), "absent"), "/sys/fs/cgroup"); ok {
		t.Error("a limit from an unreadable cgroup file")
	}
}
