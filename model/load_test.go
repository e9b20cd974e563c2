package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/weights"
)

// tinyDir is the fp32 tiny checkpoint in the llava-hf layout.
var tinyDir = filepath.Join(repoRoot, "testdata", "checkpoints", "tiny", "hf")

// brokenCopy copies tiny's config and tokenizer into a temporary directory
// and writes its tensors, after edit, as model.safetensors there.
func brokenCopy(t *testing.T, edit func(ts []*weights.Tensor) []*weights.Tensor) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tinyDir, "model.safetensors")); err != nil {
		t.Skip("tiny checkpoint absent (run tools/reference)")
	}
	dir := t.TempDir()
	for _, f := range []string{"config.json", "tokenizer.model"} {
		data, err := os.ReadFile(filepath.Join(tinyDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := weights.Open(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ts []*weights.Tensor
	for _, name := range s.Names() {
		tt, err := s.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		c := *tt
		c.Data = append([]byte(nil), tt.Data...)
		ts = append(ts, &c)
	}
	if err := weights.WriteSafetensorsFile(filepath.Join(dir, "model.safetensors"), edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openErr(t *testing.T, dir string) error {
	t.Helper()
	m, _, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 8, Backend: cpu.New(1)})
	if err == nil {
		m.Close()
		t.Fatal("load succeeded on a broken checkpoint")
	}
	return err
}

func wantIn(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

const victim = "language_model.model.layers.1.mlp.up_proj.weight"

func TestLoadMissingTensor(t *testing.T) {
	dir := brokenCopy(t, func(ts []*weights.Tensor) []*weights.Tensor {
		var out []*weights.Tensor
		for _, x := range ts {
			if x.Name != victim {
				out = append(out, x)
			}
		}
		return out
	})
	err := openErr(t, dir)
	if !errors.Is(err, weights.ErrMissing) {
		t.Errorf("error %v does not wrap ErrMissing", err)
	}
	wantIn(t, err, victim, filepath.Join(dir, "model.safetensors"))
}

func TestLoadWrongShape(t *testing.T) {
	dir := brokenCopy(t, func(ts []*weights.Tensor) []*weights.Tensor {
		for _, x := range ts {
			if x.Name == victim {
				x.Shape = []int{x.Shape[1], x.Shape[0]} // transposed
			}
		}
		return ts
	})
	err := openErr(t, dir)
	if !errors.Is(err, weights.ErrShape) {
		t.Errorf("error %v does not wrap ErrShape", err)
	}
	wantIn(t, err, victim, "model.safetensors")
}

func TestLoadNaN(t *testing.T) {
	dir := brokenCopy(t, func(ts []*weights.Tensor) []*weights.Tensor {
		for _, x := range ts {
			if x.Name == victim {
				copy(x.Data[8:], []byte{0, 0, 0xc0, 0x7f}) // a float32 NaN
			}
		}
		return ts
	})
	err := openErr(t, dir)
	if !errors.Is(err, weights.ErrNotFinite) {
		t.Errorf("error %v does not wrap ErrNotFinite", err)
	}
	wantIn(t, err, victim)
}

func TestLoadTruncatedAndBadHeader(t *testing.T) {
	for name, tc := range map[string]struct {
		mangle func([]byte) []byte
		names  string // what the message must name besides the file
	}{
		"truncated":  {func(b []byte) []byte { return b[:len(b)-100] }, `tensor "`},
		"bad header": {func(b []byte) []byte { c := append([]byte(nil), b...); c[9] = '!'; return c }, "header"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := brokenCopy(t, func(ts []*weights.Tensor) []*weights.Tensor { return ts })
			file := filepath.Join(dir, "model.safetensors")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, tc.mangle(data), 0o644); err != nil {
				t.Fatal(err)
			}
			err = openErr(t, dir)
			if !errors.Is(err, weights.ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			wantIn(t, err, file, tc.names)
		})
	}
}

func TestLoadBadConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "llama"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := openErr(t, dir)
	if !errors.Is(err, model.ErrConfig) {
		t.Errorf("error %v does not wrap ErrConfig", err)
	}
}

func TestLoadVisionTowerMissing(t *testing.T) {
	src := filepath.Join(repoRoot, "testdata", "checkpoints", "tiny", "llava", "config.json")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skip("tiny checkpoint absent (run tools/reference)")
	}
	dir := t.TempDir()
	cfg := strings.Replace(string(data), `"../clip"`, `"openai/clip-vit-large-patch14-336"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	err = openErr(t, dir)
	if !errors.Is(err, model.ErrVisionTower) {
		t.Errorf("error %v does not wrap ErrVisionTower", err)
	}
	wantIn(t, err, "openai/clip-vit-large-patch14-336")
}

// llavaCopy writes tiny's authors'-layout model directory with
// mm_vision_tower set to tower, linking the weights and tokenizer.
func llavaCopy(t *testing.T, tower string) string {
	t.Helper()
	src := filepath.Join(repoRoot, "testdata", "checkpoints", "tiny", "llava")
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Skip("tiny checkpoint absent (run tools/reference)")
	}
	dir := t.TempDir()
	cfg := strings.Replace(string(data), `"../clip"`, `"`+tower+`"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.safetensors", "tokenizer.model"} {
		abs, _ := filepath.Abs(filepath.Join(src, f))
		if err := os.Symlink(abs, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestVisionTowerFromHubCacheAndOverride resolves a hub name through the
// local Hugging Face cache, and through Options.VisionTower.
func TestVisionTowerFromHubCacheAndOverride(t *testing.T) {
	dir := llavaCopy(t, "openai/clip-tiny")
	clip, _ := filepath.Abs(filepath.Join(repoRoot, "testdata", "checkpoints", "tiny", "clip"))
	cache := t.TempDir()
	snaps := filepath.Join(cache, "models--openai--clip-tiny", "snapshots")
	if err := os.MkdirAll(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(clip, filepath.Join(snaps, "0123abcd")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_HUB_CACHE", cache)
	m, rep, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 4, Backend: cpu.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if rep.VisionDir != filepath.Join(snaps, "0123abcd") {
		t.Errorf("vision dir %s", rep.VisionDir)
	}

	t.Setenv("HF_HUB_CACHE", t.TempDir())
	if _, _, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 4, Backend: cpu.New(1)}); !errors.Is(err, model.ErrVisionTower) {
		t.Errorf("empty cache: %v", err)
	}
	m, rep, err = model.Open(context.Background(), dir, model.Options{KVBlocks: 4, Backend: cpu.New(1), VisionTower: clip})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if rep.VisionDir != clip {
		t.Errorf("override: vision dir %s", rep.VisionDir)
	}
}

// hostileCopy makes a checkpoint directory whose config.json is tiny's
// (llava-hf) with each key path of set ("text_config.rope_theta") given the
// raw JSON value, or the whole text raw when set has the key ""; the
// tokenizer and weights are links to tiny's.
func hostileCopy(t *testing.T, set map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tinyDir, "config.json"))
	if err != nil {
		t.Skip("tiny checkpoint absent (run tools/reference)")
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	for path, raw := range set {
		if path == "" {
			continue
		}
		keys := strings.Split(path, ".")
		obj := cfg
		for _, k := range keys[:len(keys)-1] {
			obj = obj[k].(map[string]any)
		}
		obj[keys[len(keys)-1]] = json.RawMessage(raw)
	}
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if raw, ok := set[""]; ok {
		data = []byte(raw)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.model", "model.safetensors"} {
		if err := os.Symlink(filepath.Join(abs, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestHostileConfig loads tiny with one config.json field out of its bounds
// (too large, zero, negative, not whole, NaN or Infinity, the wrong type)
// per row, and asserts that the load fails with ErrConfig and a message
// naming the field.
func TestHostileConfig(t *testing.T) {
	for _, c := range []struct {
		key, value string
		want       string // in the message, besides the key
	}{
		{"text_config.max_position_embeddings", "2147483648", "is 2147483648, must be in [1, 1048576]"},
		{"text_config.max_position_embeddings", "16777216", "must be in [1, 1048576]"},
		{"text_config.max_position_embeddings", "0", "must be in [1, 1048576]"},
		{"text_config.max_position_embeddings", "-4096", "must be in [1, 1048576]"},
		{"text_config.max_position_embeddings", "4096.5", "cannot unmarshal"},
		{"text_config.max_position_embeddings", "1e400", "cannot unmarshal"},
		{"text_config.hidden_size", "0", "must be in [2, 65536]"},
		{"text_config.hidden_size", "131072", "must be in [2, 65536]"},
		{"text_config.hidden_size", "66", "must be a whole, even head size"},
		{"text_config.hidden_size", "\"64\"", "cannot unmarshal string"},
		{"text_config.num_hidden_layers", "0", "must be in [1, 512]"},
		{"text_config.num_hidden_layers", "100000", "must be in [1, 512]"},
		{"text_config.num_attention_heads", "0", "must be in [1, 1024]"},
		{"text_config.num_attention_heads", "3", "must be a whole, even head size"},
		{"text_config.num_attention_heads", "64", "must be a whole, even head size"},
		{"text_config.num_key_value_heads", "0", "must be in [1, 4]"},
		{"text_config.num_key_value_heads", "8", "must be in [1, 4]"},
		{"text_config.num_key_value_heads", "3", "must divide num_attention_heads 4"},
		{"text_config.intermediate_size", "-1", "must be in [1, 262144]"},
		{"text_config.intermediate_size", "1073741824", "must be in [1, 262144]"},
		{"text_config.vocab_size", "0", "must be in [1, 1048576]"},
		{"text_config.vocab_size", "2097152", "must be in [1, 1048576]"},
		{"text_config.rms_norm_eps", "-1e-05", "must be in [1e-12, 1]"},
		{"text_config.rms_norm_eps", "0", "must be in [1e-12, 1]"},
		{"text_config.rms_norm_eps", "10", "must be in [1e-12, 1]"},
		{"text_config.rms_norm_eps", "1e-60", "must be in [1e-12, 1]"}, // 0 as float32
		{"text_config.rms_norm_eps", "\"NaN\"", "cannot unmarshal string"},
		{"text_config.rms_norm_eps", "true", "cannot unmarshal bool"},
		{"text_config.rope_theta", "-10000", "must be in [1, 1e+09]"},
		{"text_config.rope_theta", "0", "must be in [1, 1e+09]"},
		{"text_config.rope_theta", "1e300", "must be in [1, 1e+09]"},
		{"text_config.bos_token_id", "5000", "must be in [0, 1007]"},
		{"text_config.eos_token_id", "-1", "must be in [0, 1007]"},
		{"text_config.hidden_act", "\"gelu\"", "want silu"},
		{"text_config.rope_scaling", `{"type": "linear", "factor": 64}`, "not supported"},
		{"image_token_index", "2000", "must be in [0, 1007]"},
		{"vision_config.hidden_size", "0", "must be in [1, 16384]"},
		{"vision_config.hidden_size", "1048576", "must be in [1, 16384]"},
		{"vision_config.num_hidden_layers", "0", "must be in [1, 256]"},
		{"vision_config.num_attention_heads", "5", "must be a multiple of num_attention_heads 5"},
		{"vision_config.intermediate_size", "0", "must be in [1, 65536]"},
		{"vision_config.image_size", "1048576", "must be in [1, 4096]"},
		{"vision_config.patch_size", "0", "must be in [1, 56]"},
		{"vision_config.patch_size", "15", "must divide image_size 56"},
		{"vision_config.layer_norm_eps", "-1e-05", "must be in [1e-12, 1]"},
		{"vision_config.hidden_act", "\"relu\"", "want quick_gelu or gelu"},
		{"vision_feature_layer", "5", "must be in [-3, 2]"},
		{"vision_feature_layer", "-4", "must be in [-3, 2]"},
		{"text_config", "[]", "cannot unmarshal array"},
	} {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			err := openErr(t, hostileCopy(t, map[string]string{c.key: c.value}))
			if !errors.Is(err, model.ErrConfig) {
				t.Fatalf("error %v, want ErrConfig", err)
			}
			wantIn(t, err, c.key, c.want)
		})
	}
}

// TestHostileConfigSyntax checks that Python's NaN and Infinity, which are
// not JSON, are refused naming the key before them, and that a config.json
// over MaxConfigBytes is refused without being read whole.
func TestHostileConfigSyntax(t *testing.T) {
	for _, lit := range []string{"NaN", "Infinity", "-Infinity"} {
		text := `{"architectures": ["LlavaForConditionalGeneration"], "text_config": {"rms_norm_eps": ` + lit + `}}`
		err := openErr(t, hostileCopy(t, map[string]string{"": text}))
		if !errors.Is(err, model.ErrConfig) {
			t.Fatalf("%s: error %v, want ErrConfig", lit, err)
		}
		wantIn(t, err, `after key "rms_norm_eps"`, "NaN and Infinity are not JSON")
	}
	big := `{"architectures": ["LlavaForConditionalGeneration"], "pad": "` + strings.Repeat("x", model.MaxConfigBytes) + `"}`
	err := openErr(t, hostileCopy(t, map[string]string{"": big}))
	if !errors.Is(err, model.ErrConfig) {
		t.Fatalf("large config: error %v, want ErrConfig", err)
	}
	wantIn(t, err, "config.json", "more than 1048576 bytes")
}

// TestLoadRefusesNonRegularFiles replaces config.json, tokenizer.model and
// a weight shard (named by model.safetensors.index.json) in turn by a FIFO
// with no writer (opening it for reading would block start-up for ever)
// and by a directory, and asserts that each load fails at once naming the
// file and what it is. A FIFO or directory named model.safetensors is not
// taken for a checkpoint at all.
func TestLoadRefusesNonRegularFiles(t *testing.T) {
	for _, name := range []string{"config.json", "tokenizer.model", "shard.safetensors", "model.safetensors"} {
		for _, kind := range []string{"named pipe (FIFO)", "directory"} {
			dir := hostileCopy(t, nil)
			p := filepath.Join(dir, name)
			if name == "shard.safetensors" {
				index := `{"weight_map": {"language_model.lm_head.weight": "shard.safetensors"}}`
				if err := os.WriteFile(filepath.Join(dir, weights.SafetensorsIndex), []byte(index), 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			var err error
			if kind == "directory" {
				err = os.Mkdir(p, 0o755)
			} else {
				err = syscall.Mkfifo(p, 0o600)
			}
			if err != nil {
				t.Skipf("%s: %v", kind, err)
			}
			done := make(chan error, 1)
			go func() {
				m, _, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 8, Backend: cpu.New(1)})
				if err == nil {
					m.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				switch {
				case err == nil:
					t.Fatalf("%s as a %s: loaded", name, kind)
				case name == "model.safetensors":
					if !errors.Is(err, weights.ErrNoCheckpoint) {
						t.Errorf("%s as a %s: error %v, want ErrNoCheckpoint", name, kind, err)
					}
				default:
					wantIn(t, err, p, "not a regular file", kind)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s as a %s: load blocked", name, kind)
			}
		}
	}
}

// TestHugeContextBoundedPool loads tiny with the largest
// max_position_embeddings allowed (2^20, 1 GiB of float32 KV at tiny's 1 KiB
// per position) and a 4 MiB KV budget: the pool stays within the budget and
// the context is what it holds; a budget below one sequence is a clear load
// error.
func TestHugeContextBoundedPool(t *testing.T) {
	dir := hostileCopy(t, map[string]string{"text_config.max_position_embeddings": "1048576"})
	const budget = 4 << 20
	m, rep, err := model.Open(context.Background(), dir, model.Options{KVBytes: budget, Backend: cpu.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sp := m.Spec()
	perBlock := int64(2 * 2 * 16 * 64 * 4) // keys and values × layers × positions × hidden × float32
	if int64(sp.KVBlocks)*perBlock > budget || sp.KVBlocks != budget/int(perBlock) {
		t.Errorf("%d KV blocks of %d bytes for a budget of %d", sp.KVBlocks, perBlock, budget)
	}
	if sp.MaxContext != sp.KVBlocks*sp.KVBlockSize || rep.Context != sp.MaxContext || rep.MaxPositions != 1<<20 {
		t.Errorf("context %d (report %d of %d) for %d blocks of %d", sp.MaxContext, rep.Context, rep.MaxPositions, sp.KVBlocks, sp.KVBlockSize)
	}

	_, _, err = model.Open(context.Background(), dir, model.Options{KVBytes: 64 << 10, Backend: cpu.New(1)})
	if !errors.Is(err, model.ErrKVCache) {
		t.Fatalf("64 KiB budget: error %v, want ErrKVCache", err)
	}
	wantIn(t, err, "--kv-cache-bytes 65536 holds 64 positions", "a sequence needs at least 528")
}

// deviceBackend is the CPU backend posing as a device with free memory of
// its own (model.DeviceMemory).
type deviceBackend struct {
	*cpu.Backend
	free int64
	err  error
}

func (d deviceBackend) FreeMemory() (int64, error) { return d.free, d.err }

// TestDeviceMemoryBoundsPool checks that a backend reporting its free
// memory sizes the pool from it: all of it but the reserve by default, a
// budget over it refused, a default reserve (2 GiB) over it refused, an
// error reading it refused.
func TestDeviceMemoryBoundsPool(t *testing.T) {
	dir := hostileCopy(t, nil)
	// 8 MiB less a 4 MiB reserve: 204 blocks of tiny's 16 KiB of KV and
	// 4 KiB of image feature rows (model.kvPool).
	const free = 8 << 20
	m, rep, err := model.Open(context.Background(), dir, model.Options{KVReserveBytes: 4 << 20, Backend: deviceBackend{Backend: cpu.New(1), free: free}})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if rep.KVBlocks != 204 || rep.Context != 204*16 {
		t.Errorf("%d blocks, context %d; want 204 and %d", rep.KVBlocks, rep.Context, 204*16)
	}
	_, _, err = model.Open(context.Background(), dir, model.Options{Backend: deviceBackend{Backend: cpu.New(1), free: free}})
	if !errors.Is(err, model.ErrKVCache) {
		t.Fatalf("default reserve over the device's free memory: %v", err)
	}
	wantIn(t, err, "the device has 8.0 MiB free after the weights, no more than the 2.0 GiB reserve")
	_, _, err = model.Open(context.Background(), dir, model.Options{KVBytes: free + 1, Backend: deviceBackend{Backend: cpu.New(1), free: free}})
	if !errors.Is(err, model.ErrKVCache) {
		t.Fatalf("budget over the device's free memory: %v", err)
	}
	wantIn(t, err, "exceeds the 8.0 MiB of memory available")
	_, _, err = model.Open(context.Background(), dir, model.Options{Backend: deviceBackend{Backend: cpu.New(1), err: errors.New("no device")}})
	if !errors.Is(err, model.ErrKVCache) {
		t.Fatalf("device memory unreadable: %v", err)
	}
	wantIn(t, err, "free device memory: no device")
}

// TestLoRAConfigFIFO checks that a FIFO named adapter_config.json in the
// --lora directory is refused at once, not read.
func TestLoRAConfigFIFO(t *testing.T) {
	dir := hostileCopy(t, nil)
	lora := t.TempDir()
	p := filepath.Join(lora, weights.AdapterConfig)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		m, _, err := model.Open(context.Background(), dir, model.Options{KVBlocks: 8, LoRA: lora, Backend: cpu.New(1)})
		if err == nil {
			m.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, weights.ErrLoRA) {
			t.Fatalf("error %v, want ErrLoRA", err)
		}
		wantIn(t, err, p, "not a regular file", "named pipe (FIFO)")
	case <-time.After(10 * time.Second):
		t.Fatal("load blocked on the FIFO")
	}
}
