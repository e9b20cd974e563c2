package model

import (
	"strings"

	"github.com/pancap-serve/pancap/model/weights"
)

// mergeLoRA merges the PEFT adapter in dir into main, whose names follow
// layout. PEFT and LLaVA name tensors after the authors' model wrapped as
// "base_model.model.": model.layers.N.…, model.mm_projector.I.….
func mergeLoRA(main *weights.Store, layout Layout, dir string) (*weights.LoRAReport, error) {
	return weights.MergeLoRA(main, dir, func(name string) string { return adapterName(name, layout) })
}

// adapterName maps a PEFT name (with or without the "base_model.model."
// prefix) to the base checkpoint's name in layout.
func adapterName(name string, layout Layout) string {
	name = strings.TrimPrefix(name, "base_model.model.")
	if layout == LayoutLLaVA {
		return name
	}
	if rest, ok := strings.CutPrefix(name, "model.mm_projector."); ok {
		idx, leaf, _ := strings.Cut(rest, ".")
		linear := map[string]string{"0": "linear_1", "2": "linear_2"}[idx]
		if linear == "" {
			return name
		}
		return "multi_modal_projector." + linear + "." + leaf
	}
	return "language_model." + name
}
