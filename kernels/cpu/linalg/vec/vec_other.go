//go:build !amd64

package vec

func dot(a, b []float32) float32 { return dotGo(a, b) }

func axpy(a float32, x, y []float32) { axpyGo(a, x, y) }
