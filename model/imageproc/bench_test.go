package imageproc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPreprocess measures the per-request cost on the 1000×667
// progressive JPEG photo at the real model's 336 pixels.
func BenchmarkPreprocess(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Preprocess(context.Background(), data, 336, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPadAndResize isolates padding and resizing the decoded photo.
func BenchmarkPadAndResize(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	img, err := decodeRGB(context.Background(), data, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		padAndResize(context.Background(), img, 336)
	}
}

// BenchmarkDecode isolates decoding and RGB conversion of the photo.
func BenchmarkDecode(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	for b.Loop() {
		if _, err := decodeRGB(context.Background(), data, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPreprocessPNG measures the 2226×1054 PNG teaser figure.
func BenchmarkPreprocessPNG(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "teasor.png"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	for b.Loop() {
		if _, err := Preprocess(context.Background(), data, 336, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
