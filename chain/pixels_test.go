package chain

import (
	"reflect"
	"testing"
)

func TestToPixels(t *testing.T) {
	tests := []struct {
		name string
		box  Box
		w, h int
		want PixelBox
	}{
		// 1000×667: side 1000, scale 1, offset y (1000−667)/2 = 166.
		{"landscape", Box{100, 200, 900, 800}, 1000, 667, PixelBox{100, 34, 900, 634}},
		{"landscape clipped", Box{0, 0, 999, 999}, 1000, 667, PixelBox{0, 0, 999, 667}},
		// 380×570: side 570, scale 0.57, offset x (570−380)/2 = 95.
		{"portrait", Box{500, 100, 600, 1000}, 380, 570, PixelBox{190, 57, 247, 570}},
		// 333×200: odd padding 133/2 = 66 (floor, as expand2square).
		{"odd padding", Box{300, 500, 700, 700}, 333, 200, PixelBox{99.9 - 0, 166.5 - 66, 233.1, 233.1 - 66}},
		{"square", Box{250, 250, 750, 750}, 200, 200, PixelBox{50, 50, 150, 150}},
		{"negative clipped", Box{-10, -10, 5000, 5000}, 200, 100, PixelBox{0, 0, 200, 100}},
		{"empty image", Box{1, 2, 3, 4}, 0, 10, PixelBox{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToPixels(tt.box, tt.w, tt.h)
			for k := range got {
				if d := got[k] - tt.want[k]; d > 1e-9 || d < -1e-9 {
					t.Fatalf("ToPixels(%v, %d, %d) = %v, want %v", tt.box, tt.w, tt.h, got, tt.want)
				}
			}
		})
	}
}

func TestSetPixels(t *testing.T) {
	ents := []Entity{{Box: Box{0, 0, 500, 500}}, {Box: Box{500, 500, 999, 999}}}
	SetPixels(ents, 100, 100)
	want := []PixelBox{{0, 0, 50, 50}, {50, 50, 99.9, 99.9}}
	for i, e := range ents {
		for k := range e.Pixel {
			if d := e.Pixel[k] - want[i][k]; d > 1e-9 || d < -1e-9 {
				t.Errorf("entity %d: Pixel = %v, want %v", i, e.Pixel, want[i])
			}
		}
	}
	if !reflect.DeepEqual(ents[0].Box, Box{0, 0, 500, 500}) {
		t.Error("SetPixels changed the model box")
	}
}
