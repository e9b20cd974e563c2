package model

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pancap-serve/pancap/internal/safefile"
	"github.com/pancap-serve/pancap/model/llava"
)

// Bounds of the KV pool's sizing.
const (
	// MaxKVBlockSize bounds Options.KVBlockSize.
	MaxKVBlockSize = 1024
	// MinTextPositions is what a pool sized from a byte budget must hold
	// beyond one image's tokens (or max_position_embeddings when smaller):
	// a chain stage's prompt and some of its output. A smaller budget is a
	// load error rather than a server that refuses every request.
	MinTextPositions = 512
	// defaultContexts is how many full contexts a pool sized from host
	// memory holds at most.
	defaultContexts = 8
	// minKVReserve is the least device memory a pool sized from a device's
	// free memory leaves for the engine's run state, allocated on first
	// use after the pool: at the batcher's default limits (a 512-token
	// step, an 8-image vision batch) Vicuna-13B's decoder state is 0.28 GB
	// (residual, norm, Q|K|V, attention, gate|up and their 16-bit GEMM
	// copies, 512 rows of logits), the vision batch's 0.55 GB and its
	// dense attention scores 0.17 GB (a scratch that may double), the
	// feature cache 0.09 GB, cuBLAS workspaces and staging under 0.1 GB:
	// at most about 1.4 GB, which 2 GiB covers with room.
	minKVReserve = 2 << 30
	// kvReserveDivisor makes the default reserve at least 1/10 of the free
	// memory, the headroom vLLM's default --gpu-memory-utilization 0.9
	// leaves: the run state is derived, not measured on a GPU, and an
	// allocation failing after load loses the device, where a reserve too
	// large only costs blocks.
	kvReserveDivisor = 10
)

// poolMemory is the memory a KV pool comes from.
type poolMemory int

const (
	// hostMapped is host memory beside mapped weights: it sizes the
	// default pool but bounds no pool.
	hostMapped poolMemory = iota
	// hostResident is host memory with the weights read into it: a pool
	// over it is refused.
	hostResident
	// deviceFree is a device's free memory after the weights: a pool over
	// it is refused, and the default pool takes it less a reserve.
	deviceFree
)

// kvPool sizes the KV pool of t's decoder and the context a sequence may
// use, from avail bytes of mem. A block holds blockSize positions of keys
// and values of every layer:
//
//	blockBytes = 2 × layers × blockSize × hidden × element size
//	featBytes  = blockSize × hidden × 4
//	blocks     = opts.KVBlocks if set (an exact pool, for tests and benchmarks)
//	           | ⌊opts.KVBytes / blockBytes⌋ if set
//	           | ⌊(avail − reserve) / (blockBytes + featBytes)⌋ on a device
//	           | min(8 full contexts, ⌊avail/2 / (blockBytes + featBytes)⌋) on the host
//	reserve    = opts.KVReserveBytes if set | max(minKVReserve, avail/10)
//	context    = min(max_position_embeddings, blocks × blockSize)
//
// so max_position_embeddings bounds the context but never sizes an
// allocation by itself. On the host the pool takes at most half the
// memory, which it shares with everything else; a device's free memory is
// the engine's alone, and the pool takes all of it but the reserve, which
// the run state (activations, the vision batch, the feature cache, cuBLAS
// workspaces, staging) is allocated from. Sized from memory, the pool's
// share also holds the image features of the requests it can serve at once
// (the engine keeps them in device memory, imageTokens float32 rows of
// hidden per image, for as long as a request may prefill its image):
// admission reserves at least an image's positions for each, so there is
// at most one feature row per position (featBytes per block; 1/(2·layers)
// of a float32 KV block, 1.25% on Vicuna-13B). A pool that would need more
// than avail is refused where mem bounds it (not hostMapped), as are a
// reserve of avail or more, a reserve set other than for a device's
// default pool, and, always, a budget-sized pool that holds fewer than
// min(max_position_embeddings, imageTokens + MinTextPositions) positions.
func kvPool(opts Options, blockSize int, t llava.TextConfig, imageTokens int, avail int64, mem poolMemory) (blocks, context int, err error) {
	if blockSize < 1 || blockSize > MaxKVBlockSize {
		return 0, 0, fmt.Errorf("%w: KV block size %d, must be in [1, %d]", ErrKVCache, blockSize, MaxKVBlockSize)
	}
	if opts.KVReserveBytes > 0 && (mem != deviceFree || opts.KVBlocks > 0 || opts.KVBytes > 0) {
		return 0, 0, fmt.Errorf("%w: --kv-cache-reserve-bytes %d applies to a pool sized from a device's free memory (--device cuda without --kv-cache-bytes)", ErrKVCache, opts.KVReserveBytes)
	}
	elem := int64(4) // float32
	if opts.KVDType != 0 {
		elem = int64(opts.KVDType.Size())
	}
	blockBytes := kvBlockBytes(t, blockSize, elem)
	sizedBytes := blockBytes + int64(blockSize)*int64(t.Hidden)*4 // with featBytes
	// budget is what a pool sized from bytes came from, for its error.
	var budget string
	switch {
	case opts.KVBlocks > 0:
		blocks = opts.KVBlocks
		if int64(blocks) > math.MaxInt64/blockBytes {
			return 0, 0, fmt.Errorf("%w: %d blocks of %d bytes overflow", ErrKVCache, blocks, blockBytes)
		}
		if mem != hostMapped && int64(blocks)*blockBytes > avail {
			return 0, 0, fmt.Errorf("%w: %d blocks of %d bytes exceed the %s available", ErrKVCache, blocks, blockBytes, formatBytes(avail))
		}
	case opts.KVBytes > 0:
		if mem != hostMapped && opts.KVBytes > avail {
			return 0, 0, fmt.Errorf("%w: --kv-cache-bytes %d (%s) exceeds the %s of memory available", ErrKVCache, opts.KVBytes, formatBytes(opts.KVBytes), formatBytes(avail))
		}
		blocks = int(opts.KVBytes / blockBytes)
		budget = fmt.Sprintf("--kv-cache-bytes %d", opts.KVBytes)
	case mem == deviceFree:
		reserve, rule := opts.KVReserveBytes, fmt.Sprintf("--kv-cache-reserve-bytes %d", opts.KVReserveBytes)
		if reserve <= 0 {
			reserve, rule = max(minKVReserve, avail/kvReserveDivisor), "the default, max(2 GiB, 10% of free)"
		}
		if reserve >= avail {
			return 0, 0, fmt.Errorf("%w: the device has %s free after the weights, no more than the %s reserve for activations (%s)", ErrKVCache, formatBytes(avail), formatBytes(reserve), rule)
		}
		blocks = int((avail - reserve) / sizedBytes)
		budget = fmt.Sprintf("the device's free memory %s less the %s reserve (%s)", formatBytes(avail), formatBytes(reserve), rule)
	default:
		perContext := (t.MaxPos + blockSize - 1) / blockSize
		blocks = int(min(int64(defaultContexts*perContext), avail/2/sizedBytes))
		budget = "half the free memory, " + formatBytes(avail/2)
	}
	context = int(min(int64(t.MaxPos), int64(blocks)*int64(blockSize)))
	if need := min(t.MaxPos, imageTokens+MinTextPositions); budget != "" && context < need {
		return 0, 0, fmt.Errorf("%w: %s holds %d positions at %d bytes each (%d layers × hidden %d × keys and values × %d-byte elements); a sequence needs at least %d (%d image tokens + %d)",
			ErrKVCache, budget, context, blockBytes/int64(blockSize), t.Layers, t.Hidden, elem, need, imageTokens, MinTextPositions)
	}
	return blocks, context, nil
}

// kvBlockBytes is the bytes of one KV block: keys and values of every
// layer at blockSize positions of elem-byte elements. Each factor is
// bounded (the config's bounds, MaxKVBlockSize), so it is at most 2^38.
func kvBlockBytes(t llava.TextConfig, blockSize int, elem int64) int64 {
	return 2 * int64(t.Layers) * int64(blockSize) * int64(t.Hidden) * elem
}

// formatBytes writes n bytes in GiB, MiB or KiB.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// availableMemory is the memory this process can still take: MemAvailable
// of /proc/meminfo, lowered to what its memory cgroup (v2 memory.max, v1
// memory.limit_in_bytes, at every level up to the root) leaves; 4 GiB where
// none of them can be read.
func availableMemory() int64 {
	avail := int64(-1)
	if data, err := safefile.ReadFile("/proc/meminfo", 1<<20); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil && kb > 0 {
					avail = kb << 10
				}
			}
		}
	}
	if room, ok := cgroupRoom("/proc/self/cgroup", "/sys/fs/cgroup"); ok && (avail < 0 || room < avail) {
		avail = room
	}
	if avail < 0 {
		return 4 << 30
	}
	return avail
}

// cgroupRoom is the least limit − usage over the memory cgroups that
// procCgroup (/proc/self/cgroup) names, and their ancestors, under the
// cgroup file systems mounted at sysRoot (/sys/fs/cgroup: v2 there, v1 in
// its memory/); ok is false when no limit is set or none can be read.
func cgroupRoom(procCgroup, sysRoot string) (room int64, ok bool) {
	data, err := safefile.ReadFile(procCgroup, 1<<20)
	if err != nil {
		return 0, false
	}
	room = math.MaxInt64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path; v2 is "0::path".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var root, limitFile, usageFile string
		switch {
		case parts[0] == "0" && parts[1] == "":
			root, limitFile, usageFile = sysRoot, "memory.max", "memory.current"
		case strings.Contains(","+parts[1]+",", ",memory,"):
			root, limitFile, usageFile = filepath.Join(sysRoot, "memory"), "memory.limit_in_bytes", "memory.usage_in_bytes"
		default:
			continue
		}
		for dir := filepath.Join(root, parts[2]); ; dir = filepath.Dir(dir) {
			limit, lerr := readCgroupInt(filepath.Join(dir, limitFile))
			usage, uerr := readCgroupInt(filepath.Join(dir, usageFile))
			// v1 writes "no limit" as a huge page-rounded number.
			if lerr == nil && uerr == nil && limit < 1<<62 {
				room, ok = min(room, max(0, limit-usage)), true
			}
			if len(dir) <= len(root) {
				break
			}
		}
	}
	return room, ok
}

// readCgroupInt reads a cgroup file holding one integer ("max" is an
// error: no limit).
func readCgroupInt(path string) (int64, error) {
	data, err := safefile.ReadFile(path, 64)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}
