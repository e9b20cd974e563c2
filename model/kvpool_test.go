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
// BF16), host memory (8 contexts, or half of it), a device's free memory
// less a reserve, a context cut to what the pool holds, and the errors of a
// budget too small for one sequence, over the memory available, a reserve
// over the free memory, and a reserve where it does not apply.
func TestKVPool(t *testing.T) {
	tc := llava.TextConfig{Hidden: 64, Layers: 2, MaxPos: 4096}
	const bs = 16
	blockBytes := int64(2 * 2 * bs * 64 * 4)
	sizedBytes := blockBytes + bs*64*4 // with a feature row per position
	const gib = int64(1) << 30
	for _, c := range []struct {
		name         string
		opts         Options
		avail        int64
		mem          poolMemory
		blocks, ctx  int
		errFragments []string
	}{
		{name: "exact blocks", opts: Options{KVBlocks: 7}, avail: gib, mem: hostResident, blocks: 7, ctx: 7 * bs},
		{name: "exact blocks, unbounded", opts: Options{KVBlocks: 7}, avail: 0, blocks: 7, ctx: 7 * bs},
		{name: "exact blocks, device", opts: Options{KVBlocks: 7}, avail: gib, mem: deviceFree, blocks: 7, ctx: 7 * bs},
		{name: "bytes", opts: Options{KVBytes: 1000*blockBytes + 5}, avail: gib, mem: hostResident, blocks: 1000, ctx: 4096},
		{name: "bytes, device: no reserve", opts: Options{KVBytes: gib}, avail: gib, mem: deviceFree, blocks: int(gib / blockBytes), ctx: 4096},
		{name: "bf16 bytes", opts: Options{KVBytes: 100*blockBytes + 5, KVDType: kernels.BF16}, avail: gib, mem: hostResident, blocks: 200, ctx: 200 * bs},
		{name: "free memory: 8 contexts", avail: gib, mem: hostResident, blocks: 8 * 256, ctx: 4096},
		{name: "free memory: 8 contexts, mapped", avail: gib, blocks: 8 * 256, ctx: 4096},
		// Half the memory holds 150 blocks of KV alone, 120 with a feature
		// row per position (64 × 4 bytes beside 2 layers × keys and values).
		{name: "free memory: half of it", avail: 300 * blockBytes, mem: hostResident, blocks: 120, ctx: 120 * bs},
		// A device: all of it but 2 GiB (10% is less), no 8-context cap.
		{name: "device: default reserve", avail: 3 * gib, mem: deviceFree, blocks: int(gib / sizedBytes), ctx: 4096},
		{name: "device: 10% reserve", avail: 30 * gib, mem: deviceFree, blocks: int((30*gib - 3*gib) / sizedBytes), ctx: 4096},
		{name: "device: reserve set", opts: Options{KVReserveBytes: gib - 200*sizedBytes}, avail: gib, mem: deviceFree, blocks: 200, ctx: 200 * bs},
		{name: "device: bf16", opts: Options{KVReserveBytes: gib - 200*sizedBytes, KVDType: kernels.BF16}, avail: gib, mem: deviceFree,
			blocks: int(200 * sizedBytes / (blockBytes/2 + bs*64*4)), ctx: 4096},
		{name: "bytes below one sequence", opts: Options{KVBytes: 10 * blockBytes}, avail: gib, mem: hostResident,
			errFragments: []string{"--kv-cache-bytes 163840 holds 160 positions", "at least 528 (16 image tokens + 512)"}},
		{name: "free memory below one sequence", avail: 40 * blockBytes, mem: hostResident,
			errFragments: []string{"half the free memory, 320.0 KiB", "holds 256 positions"}},
		{name: "device below one sequence", opts: Options{KVReserveBytes: gib - 20*sizedBytes}, avail: gib, mem: deviceFree,
			errFragments: []string{"the device's free memory 1.0 GiB less the 1023.6 MiB reserve (--kv-cache-reserve-bytes 1073332224) holds 320 positions", "at least 528"}},
		{name: "default reserve over the free memory", avail: gib, mem: deviceFree,
			errFragments: []string{"the device has 1.0 GiB free after the weights, no more than the 2.0 GiB reserve", "max(2 GiB, 10% of free)"}},
		{name: "reserve set below 10% of the free memory", opts: Options{KVReserveBytes: 2 * gib}, avail: 30 * gib, mem: deviceFree, blocks: int(28 * gib / sizedBytes), ctx: 4096},
		{name: "reserve set at the free memory", opts: Options{KVReserveBytes: gib}, avail: gib, mem: deviceFree,
			errFragments: []string{"no more than the 1.0 GiB reserve for activations (--kv-cache-reserve-bytes 1073741824)"}},
		{name: "reserve on the host", opts: Options{KVReserveBytes: gib}, avail: 8 * gib, mem: hostResident,
			errFragments: []string{"--kv-cache-reserve-bytes 1073741824 applies to a pool sized from a device's free memory"}},
		{name: "reserve with bytes", opts: Options{KVReserveBytes: gib, KVBytes: gib}, avail: 8 * gib, mem: deviceFree,
			errFragments: []string{"without --kv-cache-bytes"}},
		{name: "bytes over the memory available", opts: Options{KVBytes: 2 * gib}, avail: gib, mem: hostResident,
			errFragments: []string{"--kv-cache-bytes 2147483648 (2.0 GiB) exceeds the 1.0 GiB"}},
		{name: "bytes over the device's memory", opts: Options{KVBytes: 2 * gib}, avail: gib, mem: deviceFree,
			errFragments: []string{"--kv-cache-bytes 2147483648 (2.0 GiB) exceeds the 1.0 GiB"}},
		{name: "bytes over the memory, unbounded", opts: Options{KVBytes: 2 * gib}, avail: gib, blocks: int(2 * gib / blockBytes), ctx: 4096},
		{name: "blocks over the memory available", opts: Options{KVBlocks: 1 << 40}, avail: gib, mem: hostResident,
			errFragments: []string{"1099511627776 blocks of 16384 bytes exceed the 1.0 GiB available"}},
		{name: "blocks overflowing int64", opts: Options{KVBlocks: 1 << 62}, avail: 0,
			errFragments: []string{"4611686018427387904 blocks of 16384 bytes overflow"}},
	} {
		blocks, ctx, err := kvPool(c.opts, bs, tc, 16, c.avail, c.mem)
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
		if _, _, err := kvPool(Options{}, bs, tc, 16, gib, hostResident); !errors.Is(err, ErrKVCache) || !strings.Contains(err.Error(), "block size") {
			t.Errorf("block size %d: %v", bs, err)
		}
	}
}

// TestKVPool13B checks the pools docs/cuda.md "Concurrent chains per card"
// states for LLaVA-1.5-13B (40 layers, hidden 5120, 576 image tokens) on
// 141 GB and 80 GB cards (113 GB and 52 GB free after the weights): a
// device's default pool takes the free memory less max(2 GiB, 10%), and
// holds 32 chains at their 86-block peak except in float32 on 80 GB; the
// host rule still gives min(8 contexts, half the memory).
func TestKVPool13B(t *testing.T) {
	tc := llava.TextConfig{Hidden: 5120, Layers: 40, MaxPos: 4096}
	const peak32 = 32 * 86
	for _, c := range []struct {
		name   string
		opts   Options
		avail  int64
		mem    poolMemory
		blocks int
	}{
		// (113 GB − 11.3 GB) / (26,214,400 + 327,680 bytes a block).
		{name: "141 GB, float32", avail: 113e9, mem: deviceFree, blocks: 3831},
		{name: "141 GB, float16", opts: Options{KVDType: kernels.F16}, avail: 113e9, mem: deviceFree, blocks: 7569},
		{name: "141 GB, bfloat16", opts: Options{KVDType: kernels.BF16}, avail: 113e9, mem: deviceFree, blocks: 7569},
		{name: "141 GB, float32, 4 GB reserve", opts: Options{KVReserveBytes: 4e9}, avail: 113e9, mem: deviceFree, blocks: 4106},
		{name: "80 GB, float32", avail: 52e9, mem: deviceFree, blocks: 1763},
		{name: "80 GB, float16", opts: Options{KVDType: kernels.F16}, avail: 52e9, mem: deviceFree, blocks: 3483},
		// The host's rule is unchanged: 8 contexts of 256 blocks, or half
		// the memory.
		{name: "host, 113 GB", avail: 113e9, mem: hostResident, blocks: 2048},
		{name: "host, 52 GB", avail: 52e9, mem: hostResident, blocks: 979},
		{name: "host, 52 GB, float16", opts: Options{KVDType: kernels.F16}, avail: 52e9, mem: hostResident, blocks: 1935},
	} {
		blocks, ctx, err := kvPool(c.opts, 16, tc, 576, c.avail, c.mem)
		if err != nil || blocks != c.blocks || ctx != 4096 {
			t.Errorf("%s: %d blocks, context %d, %v; want %d, 4096", c.name, blocks, ctx, err, c.blocks)
		}
		if fits := blocks >= peak32; c.mem == deviceFree && fits != (c.name != "80 GB, float32") {
			t.Errorf("%s: %d blocks; 32 chains at 86 blocks fit: %v", c.name, blocks, fits)
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
	blocks, ctx, err := kvPool(Options{}, 16, tc, 576, avail, hostResident)
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
