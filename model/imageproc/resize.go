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
	// narrow: the image is one pixel wide, so a row's horizontal pass is a
	// function of its one pixel, and the vertical pass sums the taps per
	// sample value instead (verticalNarrow): no horizontal pass, no tmp.
	narrow bool
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
	g.narrow = w == 1
	for yy := 0; yy < size && !g.narrow; {
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
	n := int64(size)*(4*8+3*8) + // sums, pads, padOut
		int64(size)*int64(g.rowBytes())*8 + // acc
		int64(g.maxRows)*int64(g.rowBytes()) + // tmp
		workers*(k*(8+4)+int64(g.rowBytes())*8) // scratch
	if g.stored {
		n += 4*g.taps + 64*int64(g.xb-g.xa)
	}
	return n
}

// hcol is one output column's horizontal taps on the image.
type hcol struct {
	lo   int      // first image column
	init [3]int64 // the rounding bias plus the padding taps' share, per channel
	k    []int32  // weights of image columns lo, lo+1, …
}

// newHcol is output column x's hcol from its taps' sum and image taps.
func newHcol(lo int, sum int64, k []int32) hcol {
	pad := sum - sumInt32(k)
	c := hcol{lo: lo, k: k}
	for ch := range 3 {
		c.init[ch] = half + int64(padColor[ch])*pad
	}
	return c
}

// apply resamples image row src [w × 4] into d [3].
func (c hcol) apply(d, src []byte) {
	s0, s1, s2 := c.init[0], c.init[1], c.init[2]
	px := src[4*c.lo : 4*(c.lo+len(c.k))]
	for t, k := range c.k {
		kk := int64(k)
		s0 += int64(px[4*t]) * kk
		s1 += int64(px[4*t+1]) * kk
		s2 += int64(px[4*t+2]) * kk
	}
	d[0], d[1], d[2] = clip8(s0), clip8(s1), clip8(s2)
}

func sumInt32(k []int32) int64 {
	var s int64
	for _, v := range k {
		s += int64(v)
	}
	return s
}

// scratch is one goroutine's buffers for computing taps.
type scratch struct {
	w    []float64     // [ksize]
	k    []int32       // [ksize]
	acc  []int64       // [rowBytes] (rows of resizer.acc are written whole: no false sharing)
	hist [3][256]int64 // verticalNarrow's tap sums per channel and sample value
}

// resizer is one padAndResize call in progress. Output i's taps are the same
// in both directions; their sum is needed for every i (padding columns and
// rows are resampled from it alone) and is computed once, by whichever step
// computes those taps anyway: the horizontal taps of the columns reaching
// the image, the vertical pass for rows reaching it, up front for the rest.
// The vertical pass therefore only accumulates the image's contribution; the
// padding's is added when every sum is known (finish).
type resizer struct {
	geometry
	ctx  context.Context
	img  *image.RGBA
	psum []int64 // [size] tap sums of outputs that are neither
	xsum []int64 // [xb − xa] tap sums of the columns reaching the image
	ysum []int64 // [size] tap sums of rows reaching the image
	ypad []int64 // [size] those rows' padding taps' sums
	acc  []int64 // [size × rowBytes] those rows' image taps' contribution

	hcols []hcol // [xb − xa] when stored
	mu    sync.Mutex
	free  []*scratch // scratch buffers not in use (at most one per goroutine is made)
}

// inX reports whether output column i reaches the image.
func (r *resizer) inX(i int) bool { return i >= r.xa && i < r.xb }

// imageRow reports whether output row i reaches the image.
func (r *resizer) imageRow(i int) bool {
	lo, hi := r.y.imageWindow(i)
	return lo < hi
}

// colSum and rowSum return output i's tap sum, wherever it was computed.
func (r *resizer) colSum(i int) int64 {
	switch {
	case r.inX(i):
		return r.xsum[i-r.xa]
	case r.imageRow(i):
		return r.ysum[i]
	}
	return r.psum[i]
}

func (r *resizer) rowSum(i int) int64 {
	switch {
	case r.imageRow(i):
		return r.ysum[i]
	case r.inX(i):
		return r.xsum[i-r.xa]
	}
	return r.psum[i]
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
	tmp := make([]byte, 0, r.maxRows*r.rowBytes()) // image rows [ta, tb) after the horizontal pass
	ta, tb := 0, 0
	for yy := 0; yy < size; {
		yy1, ra, rb := r.chunk(yy)
		if ra < rb && r.narrow {
			if err := r.verticalNarrow(yy, yy1); err != nil {
				return nil, err
			}
		} else if ra < rb {
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
			if err := r.vertical(tmp, ta, yy, yy1); err != nil {
				return nil, err
			}
		}
		yy = yy1
	}
	return r.finish()
}

// prepare allocates the sums and computes those of the outputs no pass
// computes, and the stored horizontal taps.
func (r *resizer) prepare() error {
	r.psum = make([]int64, r.size)
	r.xsum = make([]int64, r.xb-r.xa)
	r.ysum = make([]int64, r.size)
	r.ypad = make([]int64, r.size)
	r.acc = make([]int64, r.size*r.rowBytes())
	err := pix.ParallelRowsCtx(r.ctx, r.size, r.x.ksize, func(lo, hi int) {
		s := r.getScratch()
		defer r.putScratch(s)
		for i := lo; i < hi; i++ {
			if !r.inX(i) && !r.imageRow(i) {
				r.psum[i], _ = r.x.taps(i, s.w, s.k)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("imageproc: %w", err)
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
		r.hcols[xx-r.xa] = newHcol(lo, sum, k[start:len(k):len(k)])
		r.xsum[xx-r.xa] = sum
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
			// Column by column over the group of rows: a column's taps
			// stay in registers, which matters for narrow images (many
			// rows, few taps each).
			for j, c := range r.hcols {
				for y := lo; y < hi; y++ {
					c.apply(dst[y*rb+3*j:y*rb+3*j+3], r.img.Pix[(r0+y)*r.img.Stride:])
				}
			}
		})
	} else {
		err = pix.ParallelRowsCtx(r.ctx, cols, (r1-r0+1)*r.x.ksize, func(lo, hi int) {
			s := r.getScratch()
			defer r.putScratch(s)
			for j := lo; j < hi; j++ {
				sum, k := r.x.taps(r.xa+j, s.w, s.k)
				r.xsum[j] = sum
				ilo, _ := r.x.imageWindow(r.xa + j)
				c := newHcol(ilo, sum, k)
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

// vertical accumulates the image taps of output rows [yy0, yy1) from tmp,
// which holds the horizontal pass of image rows from ta on.
func (r *resizer) vertical(tmp []byte, ta, yy0, yy1 int) error {
	rb := r.rowBytes()
	return r.outputRows(yy0, yy1, r.y.ksize*(1+rb), func(s *scratch, yy, ilo int, k []int32) {
		acc := s.acc
		clear(acc)
		for t, kt := range k {
			off := (ilo + t - ta) * rb
			row := tmp[off : off+rb]
			row = row[:len(acc)]
			kk := int64(kt)
			for i := range acc {
				acc[i] += int64(row[i]) * kk
			}
		}
		copy(r.acc[yy*rb:(yy+1)*rb], acc)
	})
}

// outputRows runs row(s, yy, ilo, k) for output rows [yy0, yy1) in
// parallel, looking at ctx between rows worth rowCost each, with the row's
// image taps k (on image rows ilo, ilo+1, …), whose sums it records.
func (r *resizer) outputRows(yy0, yy1, rowCost int, row func(s *scratch, yy, ilo int, k []int32)) error {
	err := pix.ParallelRowsCtx(r.ctx, yy1-yy0, rowCost, func(lo, hi int) {
		s := r.getScratch()
		defer r.putScratch(s)
		for yy := yy0 + lo; yy < yy0+hi; yy++ {
			ilo, _ := r.y.imageWindow(yy)
			sum, k := r.y.taps(yy, s.w, s.k)
			r.ysum[yy], r.ypad[yy] = sum, sum-sumInt32(k)
			row(s, yy, ilo, k)
		}
	})
	if err != nil {
		return fmt.Errorf("imageproc: %w", err)
	}
	return nil
}

// verticalNarrow is vertical for a one-pixel-wide image: column j's
// horizontal pass of an image row is lut(j, channel, the row's sample), so
// the image taps of an output row are summed per channel and sample value
// first, then weighted by the lookup tables: 3 additions per tap instead of
// 3·(xb−xa) multiplications, and the same integer sums.
func (r *resizer) verticalNarrow(yy0, yy1 int) error {
	rb := r.rowBytes()
	lut := make([]int64, rb*256) // [column × channel][sample value]
	for j, c := range r.hcols {
		for ch := range 3 {
			for v := range 256 {
				lut[(3*j+ch)*256+v] = int64(clip8(c.init[ch] + int64(c.k[0])*int64(v)))
			}
		}
	}
	return r.outputRows(yy0, yy1, r.y.ksize, func(s *scratch, yy, ilo int, k []int32) {
		h0, h1, h2 := &s.hist[0], &s.hist[1], &s.hist[2]
		clear(h0[:])
		clear(h1[:])
		clear(h2[:])
		st := r.img.Stride
		for t, kt := range k {
			kk := int64(kt)
			p := r.img.Pix[(ilo+t)*st : (ilo+t)*st+3]
			h0[p[0]] += kk
			h1[p[1]] += kk
			h2[p[2]] += kk
		}
		acc := r.acc[yy*rb : (yy+1)*rb]
		for i := range acc {
			hist, l := &s.hist[i%3], lut[i*256:(i+1)*256]
			var a int64
			for v, n := range hist {
				a += n * l[v]
			}
			acc[i] = a
		}
	})
}

// finish adds the padding's share to every output sample and rounds.
func (r *resizer) finish() (*image.RGBA, error) {
	padOut := make([]int64, 3*r.size) // the horizontal pass of a padding row
	for x := range r.size {
		s := r.colSum(x)
		for c := range 3 {
			padOut[3*x+c] = int64(clip8(half + int64(padColor[c])*s))
		}
	}
	rb := r.rowBytes()
	return rgbRows(r.ctx, r.size, r.size, func(o []byte, yy int) {
		sum := r.rowSum(yy)
		for i, p := range padOut {
			o[i/3*4+i%3] = clip8(half + p*sum)
		}
		if !r.imageRow(yy) {
			return
		}
		acc, pad := r.acc[yy*rb:(yy+1)*rb], r.ypad[yy]
		for i, a := range acc {
			x := r.xa + i/3
			o[4*x+i%3] = clip8(half + padOut[3*x+i%3]*pad + a)
		}
	})
}
