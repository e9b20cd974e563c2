package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/pancap-serve/pancap/kernels/dtype"
)

// attnCase is a paged (blocks set) or dense key/value layout for Attend
// tests: rows of ld elements, the tested head group at offset off; a
// 16-bit case (kv16 BF16 or F16) holds its cache in a.K16 and a.V16.
type attnCase struct {
	a      Attn
	off    int
	kv, vv []float32 // the whole caches (as the kernel reads them: widened when 16-bit)
}

func newAttnCase(rng *rand.Rand, rows, keys int, causal bool, heads, hd, bs int, kv16 Half) *attnCase {
	off := hd // one head of the row before the group
	ld := off + heads*hd + 3
	n := keys
	if causal {
		n += rows - 1
	}
	c := &attnCase{off: off}
	slots := n
	var blocks []int32
	if bs > 0 {
		nb := (n + bs - 1) / bs
		for _, b := range rng.Perm(nb + 2)[:nb] {
			blocks = append(blocks, int32(b))
		}
		slots = (nb + 2) * bs
	}
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	c.kv, c.vv = rnd(slots*ld), rnd(slots*ld)
	c.a = Attn{Out: make([]float32, rows*ld), Q: rnd(rows * ld), K: c.kv[off:], V: c.vv[off:], LD: ld,
		Blocks: blocks, BlockSize: bs, Rows: rows, Keys: keys, Causal: causal,
		Heads: heads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	if kv16 != 0 {
		half := func(f []float32) []uint16 {
			h := make([]uint16, len(f))
			for i, x := range f {
				if kv16 == BF16 {
					h[i], f[i] = dtype.F32ToBF16(x), dtype.BF16ToF32(dtype.F32ToBF16(x))
				} else {
					h[i], f[i] = dtype.F32ToF16(x), dtype.F16ToF32(dtype.F32ToF16(x))
				}
			}
			return h
		}
		c.a.K, c.a.V, c.a.KV16 = nil, nil, kv16
		c.a.K16, c.a.V16 = half(c.kv)[off:], half(c.vv)[off:]
	}
	c.a.Out = c.a.Out[off:]
	c.a.Q = c.a.Q[off:]
	return c
}

// want is the float64 attention of row j, head h.
func (c *attnCase) want(j, h int) []float64 {
	a := &c.a
	n := a.Keys
	if a.Causal {
		n += j
	}
	row := func(p int) int {
		if a.Blocks == nil {
			return p
		}
		return int(a.Blocks[p/a.BlockSize])*a.BlockSize + p%a.BlockSize
	}
	q := a.Q[j*a.LD+h*a.HeadDim:][:a.HeadDim]
	s := make([]float64, n)
	mx := math.Inf(-1)
	for p := range s {
		k := c.kv[c.off+row(p)*a.LD+h*a.HeadDim:]
		for d, x := range q {
			s[p] += float64(x) * float64(k[d])
		}
		s[p] *= float64(a.Scale)
		mx = max(mx, s[p])
	}
	var sum float64
	for p := range s {
		s[p] = math.Exp(s[p] - mx)
		sum += s[p]
	}
	o := make([]float64, a.HeadDim)
	for p := range s {
		v := c.vv[c.off+row(p)*a.LD+h*a.HeadDim:]
		for d := range o {
			o[d] += s[p] / sum * float64(v[d])
		}
	}
	return o
}

// TestAttend checks the vector attention kernel against a float64
// reference on awkward shapes, with fp32, bf16 and fp16 caches, that it
// writes nothing outside its rows' group, and that every row alone gives
// bitwise the rows of the call.
func TestAttend(t *testing.T) {
	if fast == nil {
		t.Skip("no vector kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	var scratch []float32
	for _, hd := range []int{1, 3, 8, 13, 64, 72} {
		for _, heads := range []int{1, 3, 4} {
			for _, sh := range [][2]int{{1, 1}, {1, 9}, {3, 1}, {5, 20}, {9, 33}} {
				for _, bs := range []int{0, 1, 4, 16} {
					for i, causal := range []bool{false, true} {
						kv16 := []Half{0, BF16, F16}[(hd+heads+bs+i)%3]
						rows, keys := sh[0], sh[1]
						name := fmt.Sprintf("hd=%d heads=%d rows=%d keys=%d bs=%d causal=%v kv16=%d", hd, heads, rows, keys, bs, causal, kv16)
						c := newAttnCase(rng, rows, keys, causal, heads, hd, bs, kv16)
						for i := range c.a.Out {
							c.a.Out[i] = 7
						}
						if !Attend(c.a, &scratch) {
							t.Fatal("Attend reported no kernel")
						}
						checkAttend(t, name, c)
						for j := 0; j < rows; j++ {
							one := c.a
							one.Rows, one.Out, one.Q = 1, make([]float32, heads*hd), c.a.Q[j*c.a.LD:]
							if causal {
								one.Keys += j
							}
							Attend(one, &scratch)
							for i, x := range one.Out {
								if y := c.a.Out[j*c.a.LD+i]; math.Float32bits(x) != math.Float32bits(y) {
									t.Fatalf("%s: row %d alone %g, in the call %g at %d", name, j, x, y, i)
								}
							}
						}
					}
				}
			}
		}
	}
}

func checkAttend(t *testing.T, name string, c *attnCase) {
	t.Helper()
	a := &c.a
	w := a.Heads * a.HeadDim
	for j := 0; j < a.Rows; j++ {
		for h := 0; h < a.Heads; h++ {
			for d, want := range c.want(j, h) {
				got := a.Out[j*a.LD+h*a.HeadDim+d]
				if math.Abs(float64(got)-want) > 2e-5*(1+math.Abs(want)) {
					t.Fatalf("%s: row %d head %d [%d] = %g, want %g", name, j, h, d, got, want)
				}
			}
		}
		for i := w; i < a.LD && j*a.LD+i < len(a.Out); i++ {
			if a.Out[j*a.LD+i] != 7 {
				t.Fatalf("%s: row %d: wrote element %d outside the group", name, j, i)
			}
		}
	}
}

func TestAttendPanicsOutsideCache(t *testing.T) {
	if fast == nil {
		t.Skip("no vector kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(33, 34))
	var scratch []float32
	for name, spoil := range map[string]func(a *Attn){
		"block":       func(a *Attn) { a.Blocks[1] = 1000 },
		"negative":    func(a *Attn) { a.Blocks[0] = -1 },
		"short table": func(a *Attn) { a.Blocks = a.Blocks[:1] },
		"short q":     func(a *Attn) { a.Q = a.Q[:a.LD] },
		"half type":   func(a *Attn) { a.KV16 = 3 },
	} {
		c := newAttnCase(rng, 2, 9, true, 2, 8, 4, 0)
		spoil(&c.a)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			Attend(c.a, &scratch)
		}()
	}
}

func TestAttendNoAllocs(t *testing.T) {
	if fast == nil {
		t.Skip("no vector kernel on this CPU")
	}
	c := newAttnCase(rand.New(rand.NewPCG(35, 36)), 3, 40, true, 4, 64, 16, BF16)
	var scratch []float32
	Attend(c.a, &scratch)
	if n := testing.AllocsPerRun(20, func() {
		a := c.a
		Attend(a, &scratch)
	}); n != 0 {
		t.Errorf("Attend allocates %v times per call", n)
	}
}
