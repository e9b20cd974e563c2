package chain

// ToPixels maps a box from the model's frame to pixels of the original
// width×height image. The model saw the image centred on a max(W,H) square
// (LLaVA's expand2square pastes it at ((max−W)/2, (max−H)/2), integer
// division), with box values in thousandths of that square. So a value v
// becomes v·max(W,H)/1000 minus the paste offset, clipped to [0, W] or
// [0, H]. A non-positive width or height gives the zero box.
func ToPixels(b Box, width, height int) PixelBox {
	if width <= 0 || height <= 0 {
		return PixelBox{}
	}
	side := max(width, height)
	scale := float64(side) / 1000
	offX, offY := float64((side-width)/2), float64((side-height)/2)
	w, h := float64(width), float64(height)
	return PixelBox{
		clamp(float64(b[0])*scale-offX, w),
		clamp(float64(b[1])*scale-offY, h),
		clamp(float64(b[2])*scale-offX, w),
		clamp(float64(b[3])*scale-offY, h),
	}
}

// SetPixels fills the Pixel box of every entity for a width×height image.
func SetPixels(ents []Entity, width, height int) {
	for i := range ents {
		ents[i].Pixel = ToPixels(ents[i].Box, width, height)
	}
}

// clamp limits v to [0, hi].
func clamp(v, hi float64) float64 {
	return min(max(v, 0), hi)
}
