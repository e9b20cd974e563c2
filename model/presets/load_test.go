package presets_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/presets"
	"github.com/pancap-serve/pancap/model/weights"
)

// TestEngineLoadsTiny checks that the model loader accepts a written preset
// as a real LLaVA checkpoint, binding every tensor.
func TestEngineLoadsTiny(t *testing.T) {
	dir := t.TempDir()
	if err := presets.Write(dir, presets.Tiny, weights.BF16, 1); err != nil {
		t.Fatal(err)
	}
	m, rep, err := model.Open(context.Background(), presets.ModelDir(dir), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if rep.Layout != model.LayoutLLaVA || rep.DType != "bfloat16" || len(rep.Unused) != 0 {
		t.Errorf("report %+v", rep)
	}
	if sp := m.Spec(); !sp.RandomWeights || !strings.HasSuffix(sp.Name, "(random weights)") {
		t.Errorf("spec %+v: a generated checkpoint must say its weights are random", sp)
	}
}
