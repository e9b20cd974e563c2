package imageproc

import (
	"context"
	"fmt"
	"image"
	"math"
	"runtime"
	"sync"

	"github.com/pancap-serve/pancap/model/imageproc/internal/pix"
)

// PIL 9.4's ImagingResample (libImaging/Resample.c) for 8-bit images:
// separable, horizontal pass first, each pass with coefficients computed in
// float64, normalised per output sample, then converted to fixed point with
// precisionBits fractional bits; the intermediate image is rounded and
// clipped to 8 bits between the passes.
//
// LLaVA pads the image to a square of side max(w, h) with padColor before
// resizing. The padding is never materialised here: a tap on padding
// contributes padColor × its weight, so each output sample is the image taps'
// sum plus padColor × (sum of the padding taps), exactly what PIL's integer
// accumulation gives. Output columns and rows whose taps miss the image are
// computed from the taps' sum alone. The vertical pass streams over chunks of
// output rows, the horizontal pass computing only the image rows a chunk
// needs, once each, and only the output columns that reach the image. Work
// is O(w·h + side) and memory O(size² + a chunk), whatever the aspect ratio.

const precisionBits = 32 - 8 - 2

// half is the rounding bias PIL starts each accumulation with.
const half = 1 << (precisionBits - 1)

// bicubic is PIL's bicubic filter, a = -0.5, support 2.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return ((a+2)*x-(a+3))*x*x + 1
	}
	if x < 2 {
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// clip8 is PIL's clip8: drop the fraction bits and saturate to [0, 255].
func clip8(v int64) uint8 {
	if v >= 1<<precisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> precisionBits)
}

// axis is one direction of expand2square + resize: the padded square's side
// samples resampled onto size samples, the image covering [off, off+n).
type axis struct {
	side, size, off, n int
	scale, support, ss float64
	ksize              int // most taps an output sample has
}

func newAxis(side, size, off, n int) axis {
	scale := float64(side) / float64(size)
	filterScale := max(scale, 1)
	support := 2 * filterScale
	return axis{side: side, size: size, off: off, n: n, scale: scale, support: support,
		ss: 1 / filterScale, ksize: int(math.Ceil(support))*2 + 1}
}

// window returns output i's first input sample and number of taps (PIL's
// precompute_coeffs bounds, in the padded square).
func (a axis) window(i int) (lo, cnt int) {
	center := (float64(i) + 0.5) * a.scale
	lo = max(int(center-a.support+0.5), 0)
	return lo, min(int(center+a.support+0.5), a.side) - lo
}

// imageWindow returns output i's taps on the image, [lo, hi) in image
// coordinates; lo == hi when they all fall on padding.
func (a axis) imageWindow(i int) (lo, hi int) {
	wlo, cnt := a.window(i)
	lo = max(wlo, a.off) - a.off
	hi = min(wlo+cnt, a.off+a.n) - a.off
	return lo, max(hi, lo)
}

// taps computes output i's fixed-point weights as PIL's precompute_coeffs
// and normalize_coeffs_8bpc do, in w [≥ ksize] (scratch). It returns their
// sum and, in k [≥ ksize] (the result aliases it), the weights of the taps
// that fall on the image, in order.
func (a axis) taps(i int, w []float64, k []int32) (sum int64, img []int32) {
	lo, cnt := a.window(i)
	center := (float64(i) + 0.5) * a.scale
	w = w[:cnt]
	var ww float64
	for x := range w {
		w[x] = bicubic((float64(x+lo) - center + 0.5) * a.ss)
		ww += w[x]
	}
	ilo, ihi := max(lo, a.off)-lo, min(lo+cnt, a.off+a.n)-lo
	img = k[:0]
	for x, v := range w {
		if ww != 0 {
			v /= ww
		}
		var q int32
		if v < 0 {
			q = int32(-0.5 + v*(1<<precisionBits))
		} else {
			q = int32(0.5 + v*(1<<precisionBits))
		}
		sum += int64(q)
		if x >= ilo && x < ihi {
			img = append(img, q)
		}
	}
	return sum, img
}

// Chunking of the vertical pass: a chunk's image rows, resampled
// horizontally, take at most tmpBudget bytes unless minChunkRows output rows
// need more; horizontal coefficients are kept for the whole image when they
// number at most maxStoredTaps (else, only for very wide images, which have
// few rows and thus one chunk, they are computed per chunk).
const (
	tmpBudget     = 4 << 20
	maxStoredTaps = 1 << 20
)

// minChunkRows is the fewest output rows a chunk holds: enough to keep every
// core busy on images whose rows each need many image rows, at most 8.
func minChunkRows() int { return min(max(runtime.GOMAXPROCS(0), 2), 8) }

// geometry is the shape of one padAndResize call, computed from the sizes
// alone; resizeBytes and the resizer share it.
type geometry struct {
	size    int
	x, y    axis
	xa, xb  int   // output columns whose taps reach the image
	stored  bool  // the horizontal coefficients are kept for the whole image
	taps    int64 // image taps of the columns in [xa, xb)
	maxRows int   // the most image rows a chunk needs
}

func newGeometry(w, h, size int) geometry {
	side := max(w, h)
	g := geometry{size: size, x: newAxis(side, size, (side-w)/2, w), y: newAxis(side, size, (side-h)/2, h)}
	g.xa, g.xb = size, 0
	for i := range size {
		if lo, hi := g.x.imageWindow(i); lo < hi {
			g.xa, g.xb = min(g.xa, i), i+1
			g.taps += int64(hi - lo)
		}
	}
	g.stored = g.taps <= maxStoredTaps
	for yy := 0; yy < size; {
		yy1, ra, rb := g.chunk(yy)
		g.maxRows = max(g.maxRows, rb-ra)
		yy = yy1
	}
	return g
}

// rowBytes is the size of one image row after the horizontal pass.
func (g geometry) rowBytes() int { return 3 * (g.xb - g.xa) }

// chunk returns the output rows [yy0, yy1) of the chunk starting at yy0 and
// the image rows [ra, rb) they need (empty for rows of pure padding).
func (g geometry) chunk(yy0 int) (yy1, ra, rb int) {
	ra, rb = g.y.imageWindow(yy0)
	for yy1 = yy0 + 1; yy1 < g.size; yy1++ {
		lo, hi := g.y.imageWindow(yy1)
		if (lo < hi) != (ra < rb) {
			break // pure padding rows and image rows go in separate chunks
		}
		if ra == rb {
			continue
		}
		if yy1-yy0 >= minChunkRows() && (hi-ra)*g.rowBytes() > tmpBudget {
			break
		}
		rb = max(rb, hi)
	}
	if ra == rb {
		return yy1, 0, 0
	}
	return yy1, ra, rb
}

// resizeBytes bounds what padAndResize allocates besides the output square
// for a w×h image (see resultBytes for that).
func resizeBytes(w, h, size int) int64 {
	g := newGeometry(w, h, size)
	workers := int64(runtime.GOMAXPROCS(0))
	k := int64(max(g.x.ksize, g.y.ksize))
	n := int64(size)*(8+3) + // sums, padOut
		int64(g.maxRows)*int64(g.rowBytes()) + // tmp
		workers*(k*(8+4)+int64(g.rowBytes())*8) // taps scratch, accumulators
	if g.stored {
		n += 4*g.taps + 48*int64(g.xb-g.xa)
	}
	return n
}

// hcol is one output column's horizontal taps on the image.
type hcol struct {
	lo  int     // first image column
	pad int64   // sum of the taps on padding
	k   []int32 // weights of image columns lo, lo+1, …
}

// apply resamples image row src [w × 4] into d [3].
func (c hcol) apply(d, src []byte) {
	s0 := half + int64(padColor[0])*c.pad
	s1 := half + int64(padColor[1])*c.pad
	s2 := half + int64(padColor[2])*c.pad
	px := src[4*c.lo : 4*(c.lo+len(c.k))]
	for t, k := range c.k {
		kk := int64(k)
		s0 += int64(px[4*t]) * kk
		s1 += int64(px[4*t+1]) * kk
		s2 += int64(px[4*t+2]) * kk
	}
	d[0], d[1], d[2] = clip8(s0), clip8(s1), clip8(s2)
}

// scratch is one goroutine's buffers.
type scratch struct {
	w   []float64 // [ksize]
	k   []int32   // [ksize]
	acc []int64   // [rowBytes]
}

// resizer is one padAndResize call in progress.
type resizer struct {
	geometry
	ctx    context.Context
	img    *image.RGBA
	sum    []int64 // [size] the sum of output i's taps (equal in both directions)
	padOut []byte  // [size × 3] the horizontal pass of a padding row
	hcols  []hcol  // [xb − xa] when stored
	mu     sync.Mutex
	free   []*scratch // scratch buffers not in use (at most one per goroutine is made)
}

// getScratch takes a scratch buffer; putScratch returns it.
func (r *resizer) getScratch() *scratch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.free); n > 0 {
		s := r.free[n-1]
		r.free = r.free[:n-1]
		return s
	}
	k := max(r.x.ksize, r.y.ksize)
	return &scratch{w: make([]float64, k), k: make([]int32, k), acc: make([]int64, r.rowBytes())}
}

func (r *resizer) putScratch(s *scratch) {
	r.mu.Lock()
	r.free = append(r.free, s)
	r.mu.Unlock()
}

// column returns output column xx's image taps, computed with s.
func (r *resizer) column(xx int, s *scratch) hcol {
	if r.hcols != nil {
		return r.hcols[xx-r.xa]
	}
	sum, k := r.x.taps(xx, s.w, s.k)
	lo, _ := r.x.imageWindow(xx)
	return hcol{lo: lo, pad: sum - sumInt32(k), k: k}
}

func sumInt32(k []int32) int64 {
	var s int64
	for _, v := range k {
		s += int64(v)
	}
	return s
}

// padAndResize is LLaVA's expand2square followed by PIL 9.4's
// Image.resize((size, size), BICUBIC) on the "RGB" result, without
// materialising the padded square: the square's side is max(w, h), the image
// sits at ((side−w)/2, (side−h)/2). It looks at ctx between bounded steps.
func padAndResize(ctx context.Context, img *image.RGBA, size int) (*image.RGBA, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if img.Rect.Min != (image.Point{}) {
		return nil, fmt.Errorf("imageproc: resize: image at %v, want the origin", img.Rect.Min)
	}
	side := max(w, h)
	if side == size { // PIL returns a copy when the size does not change
		ox, oy := (side-w)/2, (side-h)/2
		return rgbRows(ctx, size, size, func(row []byte, y int) {
			for x := range size {
				copy(row[4*x:4*x+3], padColor[:])
			}
			if y >= oy && y < oy+h {
				src := img.Pix[(y-oy)*img.Stride:]
				for x := range w {
					copy(row[4*(ox+x):4*(ox+x)+3], src[4*x:4*x+3])
				}
			}
		})
	}
	r := &resizer{geometry: newGeometry(w, h, size), ctx: ctx, img: img}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	out := pix.NewRGB(size, size)
	tmp := make([]byte, 0, r.maxRows*r.rowBytes()) // image rows [ta, tb) after the horizontal pass
	ta, tb := 0, 0
	for yy := 0; yy < size; {
		yy1, ra, rb := r.chunk(yy)
		if ra < rb {
			// Keep the rows this chunk shares with the previous one.
			if ra >= ta && ra < tb {
				n := copy(tmp, tmp[(ra-ta)*r.rowBytes():(tb-ta)*r.rowBytes()])
				tmp = tmp[:n]
				ta = ra
			} else {
				tmp, ta, tb = tmp[:0], ra, ra
			}
			tmp = tmp[:(rb-ta)*r.rowBytes()]
			if err := r.horizontal(tmp[(tb-ta)*r.rowBytes():], tb, rb); err != nil {
				return nil, err
			}
			tb = rb
		}
		if err := r.vertical(out, tmp, ta, yy, yy1); err != nil {
			return nil, err
		}
		yy = yy1
	}
	return out, nil
}

// prepare computes the tap sums, the padding row's horizontal pass and, when
// stored, the horizontal taps.
func (r *resizer) prepare() error {
	r.sum = make([]int64, r.size)
	err := pix.ParallelRowsCtx(r.ctx, r.size, r.x.ksize, func(lo, hi int) {
		s := r.getScratch()
		defer r.putScratch(s)
		for i := lo; i < hi; i++ {
			r.sum[i], _ = r.x.taps(i, s.w, s.k)
		}
	})
	if err != nil {
		return fmt.Errorf("imageproc: %w", err)
	}
	r.padOut = make([]byte, 3*r.size)
	for i, s := range r.sum {
		for c := range 3 {
			r.padOut[3*i+c] = clip8(half + int64(padColor[c])*s)
		}
	}
	if !r.stored {
		return nil
	}
	r.hcols = make([]hcol, r.xb-r.xa)
	k := make([]int32, 0, r.taps) // one backing array for all columns
	s := r.getScratch()
	defer r.putScratch(s)
	for xx := r.xa; xx < r.xb; xx++ {
		sum, img := r.x.taps(xx, s.w, s.k)
		lo, _ := r.x.imageWindow(xx)
		start := len(k)
		k = append(k, img...)
		r.hcols[xx-r.xa] = hcol{lo: lo, pad: sum - sumInt32(img), k: k[start:len(k):len(k)]}
	}
	return canceled(r.ctx)
}

// horizontal resamples image rows [r0, r1) into dst [(r1−r0) × rowBytes]:
// rows in parallel when the taps are stored, else columns in parallel (each
// column's taps computed once for all the rows).
func (r *resizer) horizontal(dst []byte, r0, r1 int) error {
	cols, rb := r.xb-r.xa, r.rowBytes()
	var err error
	if r.stored {
		err = pix.ParallelRowsCtx(r.ctx, r1-r0, int(r.taps), func(lo, hi int) {
			for y := lo; y < hi; y++ {
				src := r.img.Pix[(r0+y)*r.img.Stride:]
				d := dst[y*rb : (y+1)*rb]
				for j, c := range r.hcols {
					c.apply(d[3*j:3*j+3], src)
				}
			}
		})
	} else {
		err = pix.ParallelRowsCtx(r.ctx, cols, (r1-r0+1)*r.x.ksize, func(lo, hi int) {
			s := r.getScratch()
			defer r.putScratch(s)
			for j := lo; j < hi; j++ {
				c := r.column(r.xa+j, s)
				for y := r0; y < r1; y++ {
					c.apply(dst[(y-r0)*rb+3*j:], r.img.Pix[y*r.img.Stride:])
				}
			}
		})
	}
	if err != nil {
		return fmt.Errorf("imageproc: %w", err)
	}
	return nil
}

// vertical produces output rows [yy0, yy1) from tmp, which holds the
// horizontal pass of image rows from ta on.
func (r *resizer) vertical(out *image.RGBA, tmp []byte, ta, yy0, yy1 int) error {
	rb := r.rowBytes()
	err := pix.ParallelRowsCtx(r.ctx, yy1-yy0, r.y.ksize*(1+rb), func(lo, hi int) {
		s := r.getScratch()
		defer r.putScratch(s)
		for yy := yy0 + lo; yy < yy0+hi; yy++ {
			o := out.Pix[yy*out.Stride : yy*out.Stride+4*r.size]
			sum := r.sum[yy]
			for x := range r.size {
				for c := range 3 {
					o[4*x+c] = clip8(half + int64(r.padOut[3*x+c])*sum)
				}
			}
			ilo, ihi := r.y.imageWindow(yy)
			if ilo == ihi {
				continue // every tap on padding rows
			}
			_, k := r.y.taps(yy, s.w, s.k)
			pad := sum - sumInt32(k)
			acc := s.acc[:rb]
			po := r.padOut[3*r.xa : 3*r.xb]
			for i := range acc {
				acc[i] = half + int64(po[i])*pad
			}
			for t, kt := range k {
				row := tmp[(ilo+t-ta)*rb : (ilo+t-ta+1)*rb]
				kk := int64(kt)
				for i, v := range row {
					acc[i] += int64(v) * kk
				}
			}
			for j := range r.xb - r.xa {
				x := r.xa + j
				o[4*x], o[4*x+1], o[4*x+2] = clip8(acc[3*j]), clip8(acc[3*j+1]), clip8(acc[3*j+2])
			}
		}
	})
	if err != nil {
		return fmt.Errorf("imageproc: %w", err)
	}
	return nil
}
