package app

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/embedded"
	"github.com/pancap-serve/pancap/model/imageproc"
	"github.com/pancap-serve/pancap/model/llava"
)

// ModelFlags choose and place a model: the flags of every command that
// loads one in-process (serve, generate).
type ModelFlags struct {
	Model          string // checkpoint directory; "" means the embedded default model
	LoRA           string // PEFT LoRA adapter directory merged at load time
	VisionTower    string // CLIP tower directory overriding the config's mm_vision_tower
	Device         string // compute device: cpu, cuda or cuda:N (cuda builds only)
	KVCacheBytes   int64  // KV-cache pool size; 0 means sized from free memory
	KVCacheReserve int64  // device memory a pool sized from it leaves for activations; 0 means the default rule
	KVCacheDType   string // KV-cache storage: float32, bfloat16 or float16
}

// Register adds the flags to fs.
func (m *ModelFlags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&m.Model, "model", "", "model directory (llava-hf or the authors' LLaVA layout; empty: the embedded default model)")
	fs.StringVar(&m.LoRA, "lora", "", "PEFT LoRA adapter directory to merge at load time")
	fs.StringVar(&m.VisionTower, "vision-tower", "", "CLIP tower directory overriding the config's mm_vision_tower (authors' layout)")
	fs.StringVar(&m.Device, "device", "cpu", "compute device: cpu, or cuda / cuda:N in a binary built with -tags cuda")
	fs.Int64Var(&m.KVCacheBytes, "kv-cache-bytes", 0, "KV-cache pool size in bytes (0: on CUDA the device's free memory after the weights less --kv-cache-reserve-bytes; on the CPU min(8 full contexts, half the available memory))")
	fs.Int64Var(&m.KVCacheReserve, "kv-cache-reserve-bytes", 0, "device memory that the KV-cache pool sized from free memory leaves for activations, the vision batch, cuBLAS and staging (CUDA, without --kv-cache-bytes; 0: max(2 GiB, 10% of the free memory))")
	fs.StringVar(&m.KVCacheDType, "kv-cache-dtype", "float32", "KV-cache storage: float32 (exact), bfloat16 or float16 (half the memory and the bytes decode reads, keys and values rounded once)")
}

// Check refuses a negative pool size or reserve and an unknown cache dtype
// or device before anything is loaded.
func (m ModelFlags) Check() error {
	if m.KVCacheBytes < 0 {
		return fmt.Errorf("%w: --kv-cache-bytes must be 0 (sized from free memory) or a positive size, got %d", ErrBadFlag, m.KVCacheBytes)
	}
	if m.KVCacheReserve < 0 {
		return fmt.Errorf("%w: --kv-cache-reserve-bytes must be 0 (the default rule) or a positive size, got %d", ErrBadFlag, m.KVCacheReserve)
	}
	if _, _, err := parseDevice(m.Device); err != nil {
		return fmt.Errorf("%w: %w", ErrBadFlag, err)
	}
	_, err := kvCacheDType(m.KVCacheDType)
	return err
}

// OpenModel loads the model m names on its device, decoding images within
// lim, and returns its load report. It is the one way commands load a model.
func OpenModel(ctx context.Context, m ModelFlags, lim imageproc.Limits) (*llava.Model, *model.LoadReport, error) {
	kvType, err := kvCacheDType(m.KVCacheDType)
	if err != nil {
		return nil, nil, err
	}
	be, err := newBackend(m.Device)
	if err != nil {
		return nil, nil, err
	}
	opts := model.Options{LoRA: m.LoRA, VisionTower: m.VisionTower, KVBytes: m.KVCacheBytes, KVReserveBytes: m.KVCacheReserve, KVDType: kvType,
		ImageLimits: lim, Backend: be}
	if m.Model == "" {
		return embedded.Open(ctx, opts)
	}
	return model.Open(ctx, m.Model, opts)
}
