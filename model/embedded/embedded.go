// Package embedded holds the default model compiled into the binary:
// "synth", a small PancapChain (LLaVA-1.5 architecture, 5.7M parameters,
// bf16) trained from scratch by training/recipe.sh (on a GPU, via
// training/device.sh, then continued on the CPU: training/README.md) on the
// synthetic scenes of training/scenes.py. It lets
// `pancap serve` run without a download and caption shapes on plain
// backgrounds; it is partly trained (README: "A model that means
// something") and on photos its captions are meaningless. The random-weight
// `tiny` preset the parity tests use lives in testdata/checkpoints/tiny.
package embedded

import (
	"context"
	"embed"

	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
)

// FS holds synth/llava (LLM, projector, tokenizer) and synth/clip (the vision
// tower), written by training/export.py --dtype bfloat16.
//
//go:embed synth
var FS embed.FS

// Dir is the model directory of FS; its config names "../clip" as the tower.
const Dir = "synth/llava"

// Name is the embedded model's name as engine.Spec reports it.
const Name = "synth"

// Open loads the embedded model (model.OpenFS: ctx ends a load in progress).
func Open(ctx context.Context, opts model.Options) (*llava.Model, *model.LoadReport, error) {
	opts.Name = Name
	return model.OpenFS(ctx, FS, Dir, opts)
}
