// Package embedded holds the default model compiled into the binary: the
// `tiny` preset (DESIGN.md §7) in the authors' LLaVA layout, with
// deterministic RANDOM weights. It lets `pancap serve` and the tests run
// without a download; its outputs are meaningless text.
package embedded

import (
	"embed"

	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
)

// FS holds tiny/llava (LLM, projector, tokenizer) and tiny/clip (the vision
// tower), written by tools/reference/checkpoints.py.
//
//go:embed tiny
var FS embed.FS

// Dir is the model directory of FS; its config names "../clip" as the tower.
const Dir = "tiny/llava"

// Name is the embedded model's name as engine.Spec reports it (Open adds
// " (random weights)").
const Name = "tiny"

// Open loads the embedded model. It has random weights: Spec().RandomWeights
// is true and its name says so.
func Open(opts model.Options) (*llava.Model, *model.LoadReport, error) {
	opts.Name, opts.RandomWeights = Name, true
	return model.OpenFS(FS, Dir, opts)
}
