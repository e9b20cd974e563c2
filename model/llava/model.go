package llava

import (
	"context"
	"fmt"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/model/imageproc"
)

// Options are the parts of a Model that do not come from the checkpoint's
// tensors.
type Options struct {
	Name          string // model name for engine.Spec
	DType         string // stored weight dtype, for engine.Spec
	RandomWeights bool   // generated checkpoint: say so to users
	KVBlocks      int    // blocks in the KV pool
	KVBlockSize   int    // positions per block
	// KVDType stores the KV cache as F32 (also the zero value), BF16 or F16
	// (where the backend offers them: half the memory and decode traffic,
	// keys and values rounded once as they are written).
	KVDType   kernels.DType
	Tokenizer engine.Tokenizer
	// ImageLimits bound the decoding of every image (imageproc.Limits).
	ImageLimits imageproc.Limits
	// Close releases what the weights are views of (e.g. file mappings).
	Close func() error
}

// Model is a loaded LLaVA-1.5 model. It implements engine.Engine; apart from
// Spec, Tokenizer, ImageCost and Preprocess its methods must be called from one
// goroutine.
type Model struct {
	cfg  Config
	w    Weights
	be   kernels.Backend
	opts Options
	spec engine.Spec
	kc   []kernels.Buffer // [Text.Layers] of [KVBlocks × KVBlockSize × H] keys
	vc   []kernels.Buffer // [Text.Layers] of [KVBlocks × KVBlockSize × H] values
	txt  textState
	vis  visionState
	// featPool holds released features' buffers ([ImageTokens × Hidden]
	// each) for later encodes: it grows to the most images alive at once
	// (see model.kvPool for their bound), without a driver call per image.
	featPool []kernels.Buffer
}

var _ engine.Engine = (*Model)(nil)

// New makes a Model from bound weights, allocating its KV cache on be. The
// Model owns be and closes it in Close.
func New(cfg Config, w Weights, be kernels.Backend, opts Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.KVBlocks <= 0 || opts.KVBlockSize <= 0 {
		return nil, fmt.Errorf("%w: KV cache of %d blocks × %d positions", ErrConfig, opts.KVBlocks, opts.KVBlockSize)
	}
	if opts.Tokenizer == nil {
		return nil, fmt.Errorf("%w: a tokenizer is required", ErrConfig)
	}
	if len(w.Vision) != cfg.VisionLayersUsed() || len(w.Layers) != cfg.Text.Layers || len(w.Projector) != cfg.ProjectorLayers {
		return nil, fmt.Errorf("%w: weights for %d vision, %d text, %d projector layers", ErrConfig, len(w.Vision), len(w.Layers), len(w.Projector))
	}
	m := &Model{cfg: cfg, w: w, be: be, opts: opts}
	m.spec = engine.Spec{
		Name:          opts.Name,
		Hidden:        cfg.Text.Hidden,
		VocabSize:     cfg.Vocab,
		ImageTokens:   cfg.Vision.Patches(),
		ImageSize:     cfg.Vision.ImageSize,
		MaxContext:    cfg.Text.MaxPos,
		BOS:           cfg.BOS,
		EOS:           cfg.EOS,
		KVBlockSize:   opts.KVBlockSize,
		KVBlocks:      opts.KVBlocks,
		KVDType:       kvType(opts.KVDType).String(),
		DType:         opts.DType,
		Device:        be.Name(),
		RandomWeights: opts.RandomWeights,
	}
	kvLen := opts.KVBlocks * opts.KVBlockSize * cfg.Text.Hidden
	for range cfg.Text.Layers {
		k, err := be.AllocCache(kvLen, kvType(opts.KVDType))
		if err != nil { // the dtype is refused: the first allocation says so
			m.freeCache()
			return nil, fmt.Errorf("%w: KV cache: %w", ErrConfig, err)
		}
		v, _ := be.AllocCache(kvLen, kvType(opts.KVDType))
		m.kc, m.vc = append(m.kc, k), append(m.vc, v)
	}
	return m, nil
}

// kvType is the KV-cache dtype of Options.KVDType (F32 when unset).
func kvType(dt kernels.DType) kernels.DType {
	if dt == 0 {
		return kernels.F32
	}
	return dt
}

// freeCache frees the KV cache's buffers.
func (m *Model) freeCache() {
	for i := range m.kc {
		m.be.Free(m.kc[i])
		m.be.Free(m.vc[i])
	}
	m.kc, m.vc = nil, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Spec returns the model's static facts.
func (m *Model) Spec() engine.Spec { return m.spec }

// Tokenizer returns the model's tokenizer.
func (m *Model) Tokenizer() engine.Tokenizer { return m.opts.Tokenizer }

// ImageCost bounds the bytes Preprocess allocates for an encoded image, from
// its headers (imageproc.Inspect).
func (m *Model) ImageCost(data []byte) (int64, error) {
	h, err := imageproc.Inspect(data, m.opts.ImageLimits)
	if err != nil {
		return 0, err
	}
	return h.PreprocessBytes(m.cfg.Vision.ImageSize), nil
}

// Preprocess decodes an encoded image and prepares the vision tower's input
// as LLaVA-1.5 does (imageproc.Preprocess at the tower's image size).
func (m *Model) Preprocess(ctx context.Context, data []byte) (engine.Image, error) {
	r, err := imageproc.Preprocess(ctx, data, m.cfg.Vision.ImageSize, m.opts.ImageLimits)
	if err != nil {
		return engine.Image{}, err
	}
	return engine.Image{Pixels: r.Pixels, Width: r.Width, Height: r.Height}, nil
}

// Close frees the KV cache and the backend (with the image features' and
// the vision tower's buffers, which the side queue may still be writing),
// then releases the weights' storage.
func (m *Model) Close() error {
	m.freeCache()
	m.be.Close()
	if m.opts.Close != nil {
		return m.opts.Close()
	}
	return nil
}

// grow makes *buf hold at least n elements, reallocating only when it must.
func grow(be kernels.Backend, buf *kernels.Buffer, n int) {
	if *buf != nil && (*buf).Len() >= n {
		return
	}
	if *buf != nil {
		be.Free(*buf)
	}
	*buf = be.Alloc(n)
}
