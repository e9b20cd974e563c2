package imageproc

import (
	"context"
	"fmt"
	"image"
)

// gifHeader is what PIL uses from a GIF besides the first frame's indices and
// what Go's decoder loses: the first frame's colour table with its stored
// colour at the transparent index (Go blanks that entry), the transparent
// index itself, and the number of frames.
type gifHeader struct {
	palette     []byte // RGB triplets of the first frame's colour table (local, else global)
	transparent int    // transparent index of the first frame, or -1
	frames      int    // image descriptors in the file
}

// scanGIF walks the GIF block structure without decompressing anything,
// counting frames (refusing more than maxFrames) and recording the first
// frame's colour table. A truncated tail stops the walk silently: the
// decoder reports it if the first frame is affected.
func scanGIF(data []byte, maxFrames int) (gifHeader, error) {
	h := gifHeader{transparent: -1}
	if len(data) < 13 {
		return h, fmt.Errorf("%w: decode gif: %v", ErrCorrupt, "unexpected EOF")
	}
	pos := 13
	var global []byte
	if flags := data[10]; flags&0x80 != 0 {
		n := 3 << (flags&7 + 1)
		if pos+n > len(data) {
			return h, fmt.Errorf("%w: decode gif: truncated global colour table", ErrCorrupt)
		}
		global, pos = data[pos:pos+n], pos+n
	}
	pendingTransparent := -1
	for pos < len(data) {
		switch data[pos] {
		case 0x21: // extension: label, then sub-blocks
			if pos+1 >= len(data) {
				return h, nil
			}
			if data[pos+1] == 0xf9 && pos+6 < len(data) && data[pos+2] == 4 && data[pos+3]&1 != 0 {
				pendingTransparent = int(data[pos+6])
			}
			pos = skipSubBlocks(data, pos+2)
		case 0x2c: // image descriptor, optional local table, LZW size, sub-blocks
			if pos+10 > len(data) {
				return h, nil
			}
			h.frames++
			if h.frames > maxFrames {
				return h, fmt.Errorf("%w: gif has more than %d frames", ErrTooLarge, maxFrames)
			}
			flags := data[pos+9]
			pos += 10
			table := global
			if flags&0x80 != 0 {
				n := 3 << (flags&7 + 1)
				if pos+n > len(data) {
					return h, nil
				}
				table, pos = data[pos:pos+n], pos+n
			}
			if h.frames == 1 {
				h.palette, h.transparent = table, pendingTransparent
			}
			pendingTransparent = -1
			pos = skipSubBlocks(data, pos+1)
		default: // trailer (0x3b) or garbage: the decoder judges the rest
			return h, nil
		}
	}
	return h, nil
}

// skipSubBlocks returns the position after the sub-block chain starting at
// pos (each block is a length byte and that many bytes; 0 ends the chain).
func skipSubBlocks(data []byte, pos int) int {
	for pos < len(data) {
		n := int(data[pos])
		pos++
		if n == 0 {
			return pos
		}
		pos += n
	}
	return len(data)
}

// gifToRGB renders the first frame as PIL 9.4 does: a w×h canvas (the
// logical screen) filled with the transparent index, else index 0, the frame
// pasted at its offset, every index looked up in the frame's colour table.
func gifToRGB(ctx context.Context, frame *image.Paletted, h gifHeader, w, ht int) (*image.RGBA, error) {
	lut := paletteLUT(h.palette)
	fill := max(h.transparent, 0)
	fb := frame.Bounds()
	return rgbRows(ctx, w, ht, func(row []byte, y int) {
		for x := 0; x < w; x++ {
			i := fill
			if image.Pt(x, y).In(fb) {
				i = int(frame.Pix[frame.PixOffset(x, y)])
			}
			copy(row[4*x:4*x+3], lut[3*i:3*i+3])
		}
	})
}
