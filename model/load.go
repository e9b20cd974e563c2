// Package model loads LLaVA-1.5 checkpoints into an engine: it reads the
// configuration of either layout (llava-hf or the authors'), finds the CLIP
// tower, merges a LoRA adapter, binds every tensor by its explicit name with
// shape checks into llava.Weights, and reports tensors it did not use.
// Weights stay in their stored dtype, memory-mapped, or for the CPU backend
// (which streams them from host memory every step) read once into memory of
// their own backed by huge pages.
package model

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pancap-serve/pancap/internal/safefile"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model/imageproc"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/model/weights"
	"github.com/pancap-serve/pancap/tokenizer"
)

// Errors of loading; every error returned by Load wraps one of these or one
// of package weights' sentinels.
var (
	// ErrConfig reports a missing, malformed or unsupported config.json.
	ErrConfig = errors.New("model: bad config")
	// ErrVisionTower reports a CLIP tower directory that cannot be found.
	ErrVisionTower = errors.New("model: vision tower not found")
	// ErrTokenizer reports a missing or unreadable tokenizer.model.
	ErrTokenizer = errors.New("model: bad tokenizer")
	// ErrKVCache reports a KV pool that does not fit the memory available
	// or cannot hold one sequence.
	ErrKVCache = errors.New("model: KV cache does not fit")
)

// MaxTokenizerBytes bounds the size of tokenizer.model (LLaMA's is 500 KB).
const MaxTokenizerBytes = 64 << 20

// Options tune loading.
type Options struct {
	LoRA           string          // PEFT LoRA adapter directory to merge, or ""
	VisionTower    string          // CLIP tower directory overriding mm_vision_tower (authors' layout), or ""
	KVBlocks       int             // KV cache blocks, exactly (0: from KVBytes)
	KVBytes        int64           // KV cache pool in bytes when KVBlocks is 0 (0: a device's free memory less KVReserveBytes; on the host, min(8 full contexts, half the available memory))
	KVReserveBytes int64           // device memory a pool sized from a device's free memory leaves for activations when KVBlocks and KVBytes are 0 (0: max(2 GiB, 10% of the free memory); must be 0 on the host)
	KVBlockSize    int             // positions per KV block (0: 16; at most MaxKVBlockSize)
	KVDType        kernels.DType   // KV-cache storage: F32 (also 0), BF16 or F16 (half the bytes per block)
	Backend        kernels.Backend // compute backend, owned by the model from then on (nil: the CPU backend on all cores)
	Name           string          // model name for engine.Spec ("": config's _name_or_path, else the directory name)
	// ImageLimits bound image decoding (zero fields: imageproc.DefaultLimits).
	ImageLimits imageproc.Limits
}

// DeviceMemory is implemented by a backend whose memory is its own (a
// GPU's): the KV pool is then sized from, and bounded by, the device's free
// memory (after the weights are uploaded, less a reserve for activations)
// instead of the host's.
type DeviceMemory interface {
	// FreeMemory is the device memory free now, in bytes.
	FreeMemory() (int64, error)
}

// LoadReport tells what loading found besides the model.
type LoadReport struct {
	Layout      Layout
	Dir         string // model directory
	VisionDir   string // CLIP tower directory (authors' layout)
	DType       string // dtype of the LLM's weights as stored
	WeightBytes int64  // bytes of the tensors bound
	// MaxPositions is the config's max_position_embeddings; Context, the
	// positions a sequence may use: MaxPositions, or fewer when the KV
	// pool (KVBlocks blocks of KVBlockSize positions) holds fewer.
	MaxPositions, Context int
	KVBlocks, KVBlockSize int
	Unused                []string            // tensors never bound, as "origin: name"
	LoRA                  *weights.LoRAReport // the merged adapter, or nil
	// ExpectedUnused are unused tensors that are normal for LLaVA: CLIP's
	// post_layernorm, the vision layers after the selected one, a CLIP
	// checkpoint's text model, rotary caches.
	ExpectedUnused int
}

// Log writes the report to l: a summary, and a warning per unexpected
// unused tensor.
func (r *LoadReport) Log(l *slog.Logger) {
	l.Info("model loaded", "dir", r.Dir, "layout", string(r.Layout), "dtype", r.DType,
		"weight_bytes", r.WeightBytes, "expected_unused", r.ExpectedUnused,
		"kv_blocks", r.KVBlocks, "kv_block_size", r.KVBlockSize, "context", r.Context)
	if r.Context < r.MaxPositions {
		l.Warn("context limited by the KV cache", "max_position_embeddings", r.MaxPositions, "context", r.Context)
	}
	if r.LoRA != nil {
		l.Info("LoRA adapter merged", "rank", r.LoRA.Rank, "alpha", r.LoRA.Alpha,
			"merged", len(r.LoRA.Merged), "overridden", len(r.LoRA.Overridden))
	}
	for _, u := range r.Unused {
		l.Warn("unused tensor in checkpoint", "tensor", u)
	}
}

// source reads a model's files from disk or from an fs.FS.
type source struct {
	fsys fs.FS // nil: the OS file system
}

func (s source) join(elem ...string) string {
	if s.fsys != nil {
		return path.Join(elem...)
	}
	return filepath.Join(elem...)
}

// readFile reads a regular file of at most limit bytes (a FIFO, device or
// directory is refused before it is read: safefile).
func (s source) readFile(name string, limit int64) ([]byte, error) {
	if s.fsys != nil {
		return safefile.ReadFileFS(s.fsys, name, limit)
	}
	return safefile.ReadFile(name, limit)
}

func (s source) isDir(name string) bool {
	var st fs.FileInfo
	var err error
	if s.fsys != nil {
		st, err = fs.Stat(s.fsys, name)
	} else {
		st, err = os.Stat(name)
	}
	return err == nil && st.IsDir()
}

// open opens the checkpoint in dir, its files read into resident memory
// rather than mapped when resident (a read that ctx ends).
func (s source) open(ctx context.Context, dir string, resident bool) (*weights.Store, error) {
	switch {
	case s.fsys != nil:
		return weights.OpenFS(s.fsys, dir)
	case resident:
		return weights.OpenResident(ctx, dir)
	}
	return weights.Open(dir)
}

// Load loads the checkpoint in dir and logs its LoadReport with
// slog.Default().
func Load(ctx context.Context, dir string, opts Options) (*llava.Model, error) {
	m, rep, err := Open(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	rep.Log(slog.Default())
	return m, nil
}

// Open loads the checkpoint in dir and returns its LoadReport. When ctx is
// done the load stops at its next step (between phases, and every 64 MiB of
// the weights read into memory) with ctx's error, releasing what it took.
func Open(ctx context.Context, dir string, opts Options) (*llava.Model, *LoadReport, error) {
	return open(ctx, source{}, dir, opts)
}

// OpenFS is Open for a checkpoint directory of fsys (e.g. an embedded one);
// its tensors are read into memory.
func OpenFS(ctx context.Context, fsys fs.FS, dir string, opts Options) (*llava.Model, *LoadReport, error) {
	return open(ctx, source{fsys: fsys}, dir, opts)
}

// stores are the open weight stores of a model, closed together.
type stores []*weights.Store

func (ss stores) close() error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func open(ctx context.Context, src source, dir string, opts Options) (_ *llava.Model, _ *LoadReport, err error) {
	c, err := src.readConfig(dir, opts.VisionTower)
	if err != nil {
		return nil, nil, err
	}
	rep := &LoadReport{Layout: c.layout, Dir: dir, VisionDir: c.visionDir}
	tok, err := src.readTokenizer(dir, &c)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	// The CPU backend reads the weights where they lie, every step: they
	// are kept resident for it; other backends copy them to their device.
	// Its KV cache is host memory too.
	resident := opts.Backend == nil || opts.Backend.Name() == "cpu"
	var ss stores
	defer func() {
		if err != nil {
			ss.close()
		}
	}()
	main, err := src.open(ctx, dir, resident)
	if err != nil {
		return nil, nil, err
	}
	ss = append(ss, main)
	vision := main // store holding the CLIP tensors
	if c.layout == LayoutLLaVA {
		if vision, err = src.open(ctx, c.visionDir, resident); err != nil {
			return nil, nil, err
		}
		ss = append(ss, vision)
	}
	if opts.LoRA != "" {
		if rep.LoRA, err = mergeLoRA(main, c.layout, opts.LoRA); err != nil {
			return nil, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	be := opts.Backend
	if be == nil {
		be = cpu.New(runtime.GOMAXPROCS(0))
	}
	defer func() {
		if err != nil && opts.Backend == nil {
			be.Close()
		}
	}()
	b := &binder{be: be, layout: c.layout, cfg: c.cfg}
	w := b.bind(main, vision)
	if err := errors.Join(b.errs...); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	kdt, _ := kernelDType(b.dtype)
	rep.DType, rep.WeightBytes = kdt.String(), b.bytes
	rep.countUnused(ss, c.layout, c.cfg)

	blockSize := opts.KVBlockSize
	if blockSize <= 0 {
		blockSize = 16
	}
	if err := rep.sizeKV(opts, be, blockSize, c.cfg, resident); err != nil {
		return nil, nil, err
	}
	c.cfg.Text.MaxPos = rep.Context
	m, err := llava.New(c.cfg, w, be, llava.Options{
		Name:          c.name(opts.Name, dir),
		DType:         rep.DType,
		RandomWeights: c.raw.RandomWeights,
		KVBlocks:      rep.KVBlocks,
		KVBlockSize:   blockSize,
		KVDType:       opts.KVDType,
		Tokenizer:     tok,
		ImageLimits:   opts.ImageLimits.WithDefaults(),
		Close:         ss.close,
	})
	if err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}

// checkpointConfig is what a checkpoint's configuration files say.
type checkpointConfig struct {
	raw       *rawConfig
	path      string // config.json
	layout    Layout
	visionDir string // the CLIP tower's directory (LayoutLLaVA)
	cfg       llava.Config
}

// readConfig reads and checks config.json in dir and, in the authors'
// layout, the CLIP tower's (override, when set, names its directory).
func (s source) readConfig(dir, override string) (checkpointConfig, error) {
	c := checkpointConfig{path: s.join(dir, "config.json")}
	data, err := s.readFile(c.path, MaxConfigBytes)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.raw, err = parseRawConfig(data, c.path); err != nil {
		return c, err
	}
	if c.layout, err = c.raw.layout(c.path); err != nil {
		return c, err
	}
	if c.layout == LayoutHF {
		c.cfg, err = c.raw.hfConfig(c.path)
		return c, err
	}
	if c.visionDir, err = s.visionDir(dir, *c.raw.MMVisionTower, override); err != nil {
		return c, err
	}
	vcPath := s.join(c.visionDir, "config.json")
	vdata, err := s.readFile(vcPath, MaxConfigBytes)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	vraw, err := parseRawConfig(vdata, vcPath)
	if err != nil {
		return c, err
	}
	c.cfg, err = c.raw.llavaConfig(c.path, vraw, vcPath)
	return c, err
}

// readTokenizer reads tokenizer.model in dir and completes c's vocabulary
// and special ids from it, then validates the whole configuration.
func (s source) readTokenizer(dir string, c *checkpointConfig) (*tokenizer.Tokenizer, error) {
	tokPath := s.join(dir, "tokenizer.model")
	tokData, err := s.readFile(tokPath, MaxTokenizerBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenizer, err)
	}
	tok, err := tokenizer.Parse(tokData)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTokenizer, tokPath, err)
	}
	// The true vocabulary is the tokenizer's; rows past it (llava-hf pads
	// 32000 to 32064, adding <image> and <pad>) are never sampled.
	c.cfg.Vocab = min(tok.VocabSize(), c.cfg.Text.VocabRows)
	c.cfg.BOS, c.cfg.EOS = tok.BOS(), tok.EOS()
	if err := c.cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, c.path, err)
	}
	return tok, nil
}

// name is the model's name: name when given, else the config's
// _name_or_path, else the directory's; marked when the weights are random.
func (c checkpointConfig) name(name, dir string) string {
	name = cmp.Or(name, c.raw.NameOrPath, filepath.Base(filepath.Clean(dir)))
	if c.raw.RandomWeights {
		name += " (random weights)"
	}
	return name
}

// countUnused records the tensors of ss that binding did not use,
// counting those the layout leaves unused by design apart.
func (r *LoadReport) countUnused(ss stores, layout Layout, cfg llava.Config) {
	for _, s := range ss {
		for _, name := range s.Unused() {
			if expectedUnused(name, layout, cfg) {
				r.ExpectedUnused++
			} else {
				r.Unused = append(r.Unused, s.Origin()+": "+name)
			}
		}
	}
}

// sizeKV sizes the KV pool once the weights are in memory, which then
// counts as taken (on a backend with device memory, its free memory), and
// sets the context to what the pool can hold.
func (r *LoadReport) sizeKV(opts Options, be kernels.Backend, blockSize int, cfg llava.Config, resident bool) (err error) {
	r.MaxPositions, r.KVBlockSize = cfg.Text.MaxPos, blockSize
	avail, mem := availableMemory(), hostMapped
	if resident {
		mem = hostResident
	}
	if dm, ok := be.(DeviceMemory); ok {
		if avail, err = dm.FreeMemory(); err != nil {
			return fmt.Errorf("%w: free device memory: %w", ErrKVCache, err)
		}
		mem = deviceFree
	}
	r.KVBlocks, r.Context, err = kvPool(opts, blockSize, cfg.Text, cfg.Vision.Patches(), avail, mem)
	return err
}

// visionDir resolves the CLIP tower: override when set, else
// mm_vision_tower as an absolute path, a path relative to the model
// directory, or a Hugging Face hub name found in the local hub cache.
func (s source) visionDir(dir, tower, override string) (string, error) {
	if override != "" {
		if s.isDir(override) {
			return override, nil
		}
		return "", fmt.Errorf("%w: vision tower override %s is not a directory", ErrVisionTower, override)
	}
	cand := tower
	if s.fsys != nil || !filepath.IsAbs(tower) {
		cand = s.join(dir, tower)
	}
	if s.isDir(cand) {
		return cand, nil
	}
	if s.fsys == nil {
		if snap := hubSnapshot(tower); snap != "" {
			return snap, nil
		}
	}
	return "", fmt.Errorf("%w: mm_vision_tower %q: %s is not a directory and no snapshot is in the Hugging Face cache (nothing is downloaded: pass the CLIP checkpoint's directory, or point mm_vision_tower at it, absolute or relative to %s)", ErrVisionTower, tower, cand, dir)
}

// hubSnapshot finds a hub repository "org/name" in the local Hugging Face
// cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub): the
// snapshot refs/main names, else the only snapshot. It returns "" when
// there is none.
func hubSnapshot(repo string) string {
	org, name, ok := strings.Cut(repo, "/")
	if !ok || org == "" || name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(org, ".") {
		return ""
	}
	cache := os.Getenv("HF_HUB_CACHE")
	if cache == "" {
		if home := os.Getenv("HF_HOME"); home != "" {
			cache = filepath.Join(home, "hub")
		} else if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache", "huggingface", "hub")
		}
	}
	root := filepath.Join(cache, "models--"+org+"--"+name)
	if ref, err := safefile.ReadFile(filepath.Join(root, "refs", "main"), 4096); err == nil {
		snap := filepath.Join(root, "snapshots", strings.TrimSpace(string(ref)))
		if st, err := os.Stat(snap); err == nil && st.IsDir() {
			return snap
		}
	}
	snaps, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil || len(snaps) != 1 {
		return ""
	}
	snap := filepath.Join(root, "snapshots", snaps[0].Name())
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return ""
	}
	return snap
}
