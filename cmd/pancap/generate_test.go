package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/internal/app"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/embedded"
	"github.com/pancap-serve/pancap/model/presets"
	"github.com/pancap-serve/pancap/model/weights"
)

// writePNG draws a small two-colour test image.
func writePNG(t *testing.T) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			img.Set(x, y, color.RGBA{uint8(6 * x), uint8(8 * y), 200, 255})
		}
	}
	path := filepath.Join(t.TempDir(), "img.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGenerateEmbeddedJSON(t *testing.T) {
	dump := filepath.Join(t.TempDir(), "logits.f32")
	var out bytes.Buffer
	err := runGenerate(t.Context(), &out, generateFlags{
		image: writePNG(t), prompt: "Please localize all entities in this image.",
		maxNew: 5, json: true, ignoreEOS: true, dumpLogits: dump,
	})
	if err != nil {
		t.Fatal(err)
	}
	var r generateResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if r.RandomWeights || r.Model != embedded.Name {
		t.Errorf("model %q random_weights %v: want the trained embedded model", r.Model, r.RandomWeights)
	}
	if !strings.HasSuffix(r.Prompt, "USER: <image>\nPlease localize all entities in this image. ASSISTANT:") {
		t.Errorf("prompt not wrapped in vicuna_v1: %q", r.Prompt)
	}
	images := 0
	for _, id := range r.InputIDs {
		if id == -200 {
			images++
		}
	}
	if images != 1 || r.InputIDs[0] != 1 {
		t.Errorf("input ids %v: want BOS first and one image placeholder", r.InputIDs)
	}
	if len(r.GeneratedIDs) != 5 || r.Finish != "length" || r.Timings.DecodeTokens != 5 || r.Timings.PrefillTokens != len(r.InputIDs)-1+64 {
		t.Errorf("result %+v", r)
	}
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 4*1000 {
		t.Errorf("dumped %d bytes of logits, want 4×1000", len(data))
	}
}

func TestGenerateTextOnlyAndErrors(t *testing.T) {
	random := t.TempDir() // a checkpoint of `pancap model generate`, marked as random
	if err := presets.Write(random, presets.Tiny, weights.F32, 1); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runGenerate(t.Context(), &out, generateFlags{ModelFlags: app.ModelFlags{Model: presets.ModelDir(random)}, prompt: "hello", maxNew: 3, ignoreEOS: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "RANDOM WEIGHTS") || !strings.Contains(out.String(), "generated ids (3, length)") {
		t.Errorf("unexpected output:\n%s", out.String())
	}
	err := runGenerate(t.Context(), &out, generateFlags{prompt: "<image>\nhi", raw: true, maxNew: 1})
	if !errors.Is(err, errGenerateArgs) {
		t.Errorf("a raw <image> prompt without --image gave %v", err)
	}
	if err := runGenerate(t.Context(), &out, generateFlags{prompt: "hi", maxNew: 1, ModelFlags: app.ModelFlags{Model: t.TempDir()}}); err == nil {
		t.Error("an empty model directory loaded")
	}
}

// TestGenerateDeviceFlags: generate takes serve's model flags, checked
// before anything loads.
func TestGenerateDeviceFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--device", "tpu"}, "--device: want cpu, cuda or cuda:N"},
		{[]string{"--kv-cache-dtype", "int8"}, "--kv-cache-dtype"},
		{[]string{"--kv-cache-bytes", "-5"}, "--kv-cache-bytes"},
		{[]string{"--kv-cache-reserve-bytes", "-5"}, "--kv-cache-reserve-bytes"},
	} {
		_, _, err := run(t, append([]string{"generate", "--prompt", "hi"}, tt.args...)...)
		if !errors.Is(err, app.ErrBadFlag) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want app.ErrBadFlag naming %q", tt.args, err, tt.want)
		}
	}
	// A reserve reaches the model, which refuses it on the host.
	_, _, err := run(t, "generate", "--prompt", "hi", "--kv-cache-reserve-bytes", "1000000")
	if !errors.Is(err, model.ErrKVCache) || !strings.Contains(err.Error(), "--kv-cache-reserve-bytes 1000000 applies to a pool sized from a device's free memory") {
		t.Errorf("--kv-cache-reserve-bytes on the CPU: %v, want model.ErrKVCache naming it", err)
	}
}
