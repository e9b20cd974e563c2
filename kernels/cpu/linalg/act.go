package linalg

import "fmt"

// SiLUMul computes out[i] = silu(a[i]) · c[i] (the SwiGLU gate) with the
// vector kernel and reports true, or reports false, doing nothing, where no
// vector kernel is in use (Kernel() is "go"): the caller runs its portable
// path then. The slices must have one length; out may alias a or c.
func SiLUMul(out, a, c []float32) bool {
	if fast == nil || fast.siluMul == nil {
		return false
	}
	if len(a) != len(out) || len(c) != len(out) {
		panic(fmt.Sprintf("linalg: SiLUMul of %d, %d and %d elements", len(out), len(a), len(c)))
	}
	if len(out) > 0 {
		fast.siluMul(out, a, c)
	}
	return true
}

// QuickGELU computes out[i] = a[i] · sigmoid(1.702 · a[i]) (CLIP's
// activation) with the vector kernel and reports true, or reports false,
// doing nothing, like SiLUMul.
func QuickGELU(out, a []float32) bool {
	if fast == nil || fast.quickGELU == nil {
		return false
	}
	if len(a) != len(out) {
		panic(fmt.Sprintf("linalg: QuickGELU of %d and %d elements", len(out), len(a)))
	}
	if len(out) > 0 {
		fast.quickGELU(out, a)
	}
	return true
}

// ExpShift computes out[i] = exp(a[i] − s), the numerators of a softmax
// whose maximum is s (every a[i] ≤ s, −Inf allowed: it gives 0), within a
// few ulp, with the vector kernel and reports true, or reports false, doing
// nothing, like SiLUMul. Results below the smallest normal float32 flush
// to 0. The slices must have one length; out may alias a.
func ExpShift(out, a []float32, s float32) bool {
	if fast == nil || fast.expShift == nil {
		return false
	}
	if len(a) != len(out) {
		panic(fmt.Sprintf("linalg: ExpShift of %d and %d elements", len(out), len(a)))
	}
	if len(out) > 0 {
		fast.expShift(out, a, s)
	}
	return true
}
