package imageproc

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"

	ijpeg "github.com/pancap-serve/pancap/model/imageproc/internal/jpeg"
)

// Generators of the costliest images the limits admit, at any size: the
// tests use small ones, BenchmarkWorstCase and TestWorstCaseCost the ones at
// DefaultLimits, and the fuzz corpus seeds come from them too.

// bitWriter packs bits MSB first, as JPEG and (reversed) nothing else does.
type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc uint
}

func (b *bitWriter) write(v uint64, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		b.acc = b.acc<<1 | (v>>uint(i))&1
		b.nacc++
		if b.nacc == 8 {
			b.buf = append(b.buf, byte(b.acc))
			if byte(b.acc) == 0xff {
				b.buf = append(b.buf, 0) // byte stuffing
			}
			b.acc, b.nacc = 0, 0
		}
	}
}

// flush pads the last byte with 1 bits.
func (b *bitWriter) flush() []byte {
	for b.nacc != 0 {
		b.write(1, 1)
	}
	return b.buf
}

// jpegScan is one scan of a generated progressive greyscale JPEG.
type jpegScan struct {
	ss, se, ah, al byte
}

// jpegSegment appends marker m with its payload.
func jpegSegment(out []byte, m byte, payload ...byte) []byte {
	out = append(out, 0xff, m, byte((len(payload)+2)>>8), byte(len(payload)+2))
	return append(out, payload...)
}

// progressiveJPEG is a w×h greyscale progressive JPEG running the given
// scans over blocks whose coefficients are all zero (a flat grey image):
// every DC scan codes one bit per block, every AC scan ends all its blocks
// with end-of-band runs of up to 32767 blocks, a few bits per run. Such
// scans cost the decoder a visit of every block (and, for a refinement, a
// look at every coefficient of the band) for almost no input: the
// progressive scan bomb.
func progressiveJPEG(w, h int, scans []jpegScan) []byte {
	out := []byte{0xff, 0xd8}
	q := make([]byte, 65)
	for i := 1; i < 65; i++ {
		q[i] = 1
	}
	out = jpegSegment(out, 0xdb, q...)                                                       // DQT 0
	out = jpegSegment(out, 0xc2, 8, byte(h>>8), byte(h), byte(w>>8), byte(w), 1, 1, 0x11, 0) // SOF2, 1 component
	// DC table 0: one code "0" for category 0. AC table 0: EOB0..EOB14
	// (symbols 0x00, 0x10, …, 0xe0), all 4 bits long.
	dc := append([]byte{0x00, 1}, make([]byte, 15)...)
	dc = append(dc, 0)
	ac := []byte{0x10, 0, 0, 0, 15}
	ac = append(ac, make([]byte, 12)...)
	for r := range 15 {
		ac = append(ac, byte(r<<4))
	}
	out = jpegSegment(out, 0xc4, append(dc, ac...)...)
	blocks := ((w + 7) / 8) * ((h + 7) / 8)
	for _, s := range scans {
		out = jpegSegment(out, 0xda, 1, 1, 0x00, s.ss, s.se, s.ah<<4|s.al)
		var bw bitWriter
		if s.ss == 0 {
			for range blocks {
				bw.write(0, 1) // DC difference category 0, or a refinement bit 0
			}
		} else {
			for left := blocks; left > 0; {
				run := min(left, 32767)
				r := 0
				for 1<<(r+1) <= run {
					r++
				}
				bw.write(uint64(r), 4) // EOBr
				bw.write(uint64(run-1<<r), uint(r))
				left -= run
			}
		}
		out = append(out, bw.flush()...)
	}
	return append(out, 0xff, 0xd9)
}

// repeatScans is n copies of s.
func repeatScans(s jpegScan, n int) []jpegScan {
	out := make([]jpegScan, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Scan kinds of the bomb: a DC refinement (one bit read per block), a
// one-coefficient AC first scan and a full-band AC refinement (end-of-band
// runs).
var (
	scanDCRefine   = jpegScan{ss: 0, se: 0, ah: 1, al: 0}
	scanACFirst    = jpegScan{ss: 1, se: 1, ah: 0, al: 0}
	scanACRefine63 = jpegScan{ss: 1, se: 63, ah: 1, al: 0}
)

// jpegOverhead is what the work cap charges a block visit.
const jpegOverhead = ijpeg.BlockOverhead

// scanBombJPEG is a w×h progressive JPEG with a DC scan and as many scans of
// kind s as the work cap at maxPixels admits (or n, if smaller and positive).
func scanBombJPEG(w, h, maxPixels int, s jpegScan, n int) []byte {
	blocks := int64((w+7)/8) * int64((h+7)/8)
	budget := jpegWorkPerPixel*int64(maxPixels) - blocks*(1+jpegOverhead)
	fit := int(budget / (blocks * int64(int(s.se-s.ss)+1+jpegOverhead)))
	fit = min(fit, maxJPEGScans-1)
	if n > 0 {
		fit = min(fit, n)
	}
	return progressiveJPEG(w, h, append([]jpegScan{{}}, repeatScans(s, fit)...))
}

// smoothRGBA is a w×h opaque image of gentle gradients, cheap to compress.
func smoothRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		row := m.Pix[y*m.Stride : y*m.Stride+4*w]
		for x := range w {
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = byte(x/64), byte(y/64), byte((x+y)/128), 0xff
		}
	}
	return m
}

// baselineJPEG is a w×h 4:2:0 baseline JPEG (Go's encoder) of a gradient
// with some texture, the plain large photo of the cost comparisons.
func baselineJPEG(t testing.TB, w, h int) []byte {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		row := m.Pix[y*m.Stride : y*m.Stride+4*w]
		for x := range w {
			n := byte((x*7 + y*13 + (x*y)>>5) & 31)
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = byte(x/32)+n, byte(y/32)+n, byte((x+y)/64)-n, 0xff
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// encodePNG encodes m with Go's PNG encoder.
func encodePNG(t testing.TB, m image.Image) []byte {
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// thinPNG is a w×h 8-bit RGB PNG of a gradient: 1×N and N×1 are the images
// whose padded square is largest for their pixels.
func thinPNG(t testing.TB, w, h int) []byte {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(m.Pix); i += 4 {
		p := i / 4
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = byte(p>>10), byte(p>>14), byte(p>>18), 0xff
	}
	return encodePNG(t, m)
}

// png16 is a w×h 16-bit RGBA PNG: 8 bytes per pixel in the decoder.
func png16(t testing.TB, w, h int) []byte {
	src := smoothRGBA(w, h)
	m := image.NewNRGBA64(src.Rect)
	for i := range len(src.Pix) {
		m.Pix[2*i], m.Pix[2*i+1] = src.Pix[i], src.Pix[i]^0x5a
	}
	return encodePNG(t, m)
}

// pngChunk appends a PNG chunk.
func pngChunk(out []byte, typ string, data []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
	c := append([]byte(typ), data...)
	out = append(out, c...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(c))
}

// interlacedPNG is a w×h 8-bit RGB Adam7-interlaced PNG of a gradient (Go's
// encoder does not interlace): the decoder allocates every pass's image and
// then the whole one.
func interlacedPNG(t testing.TB, w, h int) []byte {
	passes := [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
	var raw bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&raw, zlib.BestSpeed)
	for _, p := range passes {
		pw := (w - p[0] + p[2] - 1) / p[2]
		ph := (h - p[1] + p[3] - 1) / p[3]
		if pw <= 0 || ph <= 0 {
			continue
		}
		row := make([]byte, 1+3*pw)
		for y := range ph {
			for x := range pw {
				row[1+3*x], row[2+3*x], row[3+3*x] = byte(x/16), byte(y/16), byte(p[0]*32)
			}
			if _, err := zw.Write(row); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	out := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	out = pngChunk(out, "IHDR", append(ihdr, 8, 2, 0, 0, 1))
	out = pngChunk(out, "IDAT", raw.Bytes())
	return pngChunk(out, "IEND", nil)
}

// manyFramesGIF is a w×h GIF of a full-screen frame followed by 1×1 ones up
// to the given number of frames (only the first is decoded; the others are
// only counted).
func manyFramesGIF(t testing.TB, w, h, frames int) []byte {
	m := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	for i := range m.Pix {
		m.Pix[i] = byte(i / 4096)
	}
	g := &gif.GIF{Config: image.Config{ColorModel: color.Palette(palette.Plan9), Width: w, Height: h}}
	for i := range frames {
		if i > 0 {
			m = image.NewPaletted(image.Rect(0, 0, 1, 1), palette.Plan9)
		}
		g.Image = append(g.Image, m)
		g.Delay = append(g.Delay, 0)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// vp8lBits packs bits LSB first, as VP8L does.
type vp8lBits struct {
	buf  []byte
	acc  uint64
	nacc uint
}

func (b *vp8lBits) write(v uint64, n uint) {
	b.acc |= v << b.nacc
	b.nacc += n
	for b.nacc >= 8 {
		b.buf = append(b.buf, byte(b.acc))
		b.acc >>= 8
		b.nacc -= 8
	}
}

// losslessWebP is a w×h lossless WebP whose five prefix codes each have a
// single symbol: its pixels cost no bits at all, the decoder writes w×h
// pixels for a 30-byte file.
func losslessWebP(w, h int) []byte {
	var b vp8lBits
	b.write(0x2f, 8)
	b.write(uint64(w-1), 14)
	b.write(uint64(h-1), 14)
	b.write(0, 1)                                       // alpha unused
	b.write(0, 3)                                       // version
	b.write(0, 1)                                       // no transform
	b.write(0, 1)                                       // no colour cache
	b.write(0, 1)                                       // no meta prefix codes
	for _, sym := range []uint64{90, 200, 30, 255, 0} { // green, red, blue, alpha, distance
		b.write(1, 1) // simple code
		b.write(0, 1) // one symbol
		b.write(1, 1) // of 8 bits
		b.write(sym, 8)
	}
	b.write(0, 7)
	data := b.buf
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	out := []byte("RIFF\x00\x00\x00\x00WEBPVP8L")
	out = binary.LittleEndian.AppendUint32(out, uint32(len(b.buf)))
	out = append(out, data...)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out
}
