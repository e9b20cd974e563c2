package model_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	m, _, err := model.Open(dir, model.Options{KVBlocks: 8, Backend: cpu.New(1)})
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
	m, rep, err := model.Open(dir, model.Options{KVBlocks: 4, Backend: cpu.New(1)})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if rep.VisionDir != filepath.Join(snaps, "0123abcd") {
		t.Errorf("vision dir %s", rep.VisionDir)
	}

	t.Setenv("HF_HUB_CACHE", t.TempDir())
	if _, _, err := model.Open(dir, model.Options{KVBlocks: 4, Backend: cpu.New(1)}); !errors.Is(err, model.ErrVisionTower) {
		t.Errorf("empty cache: %v", err)
	}
	m, rep, err = model.Open(dir, model.Options{KVBlocks: 4, Backend: cpu.New(1), VisionTower: clip})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if rep.VisionDir != clip {
		t.Errorf("override: vision dir %s", rep.VisionDir)
	}
}
