package score

import (
	"fmt"
	"regexp"
)

// modelBoxRe is an inline box of the model's output. \p{Nd} because
// Python's \d matches every Unicode decimal digit.
var modelBoxRe = regexp.MustCompile(`<box>\[\[(\p{Nd}+), (\p{Nd}+), (\p{Nd}+), (\p{Nd}+)\]\]</box>`)

// ConvertBoxes rewrites every inline box of a model caption,
// "<box>[[a, b, c, d]]</box>" in the 0–1000 frame of the image padded to a
// square, into the reference captions' "[[x1, y1, x2, y2]]" in [0, 1] of
// the original width × height image, three decimals, as the authors'
// scripts_llmjudge/agg_jsons_asv2togt.py does before scoring.
func ConvertBoxes(caption string, width, height int) (string, error) {
	if width <= 0 || height <= 0 {
		return "", fmt.Errorf("score: image size %dx%d: must be positive", width, height)
	}
	return modelBoxRe.ReplaceAllStringFunc(caption, func(m string) string {
		g := modelBoxRe.FindStringSubmatch(m)
		var b [4]float64
		for i := range b {
			b[i], _ = pyFloat(g[i+1]) // digits only: always parses
		}
		b = boxToImage(b, width, height)
		return fmt.Sprintf("[[%.3f, %.3f, %.3f, %.3f]]", b[0], b[1], b[2], b[3])
	}), nil
}

// boxToImage is the authors' asv2box2gtformat with new_size 1000 and
// org_size 1: scale by the long side over 1000, remove the centring pad
// (|W-H|//2) from the short axis, divide by the side, clamp to [0, 1]. The
// conversions to float64 keep every step rounded as Python rounds it.
func boxToImage(b [4]float64, width, height int) [4]float64 {
	w, h := float64(width), float64(height)
	long, padAxis := w, 1 // a wide image is padded above and below
	if width <= height {
		long, padAxis = h, 0
	}
	s := long / 1000
	pad := float64(max(width-height, height-width) / 2)
	for i := range b {
		b[i] = float64(b[i] * s)
		if i%2 == padAxis {
			b[i] -= pad
		}
	}
	out := [4]float64{b[0] / w, b[1] / h, b[2] / w, b[3] / h}
	for i, v := range out {
		out[i] = min(max(v, 0), 1)
	}
	return out
}

// iou is torchvision's box_iou for one pair in float32, as the authors
// call it on float32 tensors. The float32 conversions round each step as
// torch does and keep the compiler from fusing any of them.
func iou(a, b Box) float32 {
	var p, q [4]float32
	for i := range a {
		p[i], q[i] = float32(a[i]), float32(b[i])
	}
	area1 := float32(float32(p[2]-p[0]) * float32(p[3]-p[1]))
	area2 := float32(float32(q[2]-q[0]) * float32(q[3]-q[1]))
	w := clampZero(float32(min(p[2], q[2]) - max(p[0], q[0])))
	h := clampZero(float32(min(p[3], q[3]) - max(p[1], q[1])))
	inter := float32(w * h)
	union := float32(float32(area1+area2) - inter)
	return inter / union
}

// clampZero is torch's clamp(min=0), which keeps NaN (Go's min and max
// above propagate NaN as torch's minimum and maximum do).
func clampZero(x float32) float32 {
	if x != x {
		return x
	}
	return max(x, 0)
}
