package cpu

import "math"

// expf is e^x in float32 (Cephes' expf: range reduction by ln 2 in two
// parts and a degree-6 polynomial), within 2 ulp of the exact value for
// normal results. Results below the smallest normal float32 flush to 0,
// above the largest finite one overflow to +Inf; NaN stays NaN.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -87.33654:
		return 0
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - n*c1 - n*c2
	z := r * r
	y := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	y = y*z + r + 1
	// y · 2ⁿ for n in [-126, 128]; 2¹²⁸ is split to stay finite.
	e := int32(n)
	if e > 127 {
		return y * 2 * math.Float32frombits(uint32(e-1+127)<<23)
	}
	return y * math.Float32frombits(uint32(e+127)<<23)
}
