package chain

// Stage is one step of PancapChain, numbered as in the paper.
type Stage int

// The four stages, in order.
const (
	Localize Stage = 1 // boxes of all entities
	Tag      Stage = 2 // semantic tag for each box
	Discover Stage = 3 // entities missed by stages 1–2
	Caption  Stage = 4 // the panoptic caption
)

// Box is a bounding box [X1, Y1, X2, Y2] in the model's frame: integers in
// [0, 1000) relative to the image after it was padded to a square.
type Box [4]int

// PixelBox is a box in pixels of the original (unpadded) image.
type PixelBox [4]float64

// Entity is one parsed item of a hand-off list or a caption mention.
type Entity struct {
	Tag   string   // semantic tag; empty for stage-1 items
	Box   Box      // model frame, 0–1000
	Pixel PixelBox // original image pixels, clipped to the image
	Stage Stage    // the stage whose output it came from
}
