package sample

import (
	"errors"
	"math"
)

// ErrInvalidParams is wrapped by every error of Params.Validate.
var ErrInvalidParams = errors.New("invalid sampling parameters")

// ParamError names the field of Params that is out of range.
type ParamError struct {
	Field  string // "temperature", "top_p" or "top_k"
	Reason string // e.g. "must be >= 0"
}

// Error returns "field: reason".
func (e *ParamError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalidParams.
func (e *ParamError) Unwrap() error { return ErrInvalidParams }

// Validate checks the ranges: temperature finite and >= 0, top_p in (0, 1]
// or 0 for off, top_k >= 0. Errors are *ParamError wrapping
// ErrInvalidParams.
func (p Params) Validate() error {
	t := float64(p.Temperature)
	if math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return &ParamError{"temperature", "must be finite and >= 0"}
	}
	if !(p.TopP >= 0 && p.TopP <= 1) { // also catches NaN
		return &ParamError{"top_p", "must be in (0, 1]"}
	}
	if p.TopK < 0 {
		return &ParamError{"top_k", "must be >= 0"}
	}
	return nil
}

// Greedy reports whether p picks the most likely token every time.
func (p Params) Greedy() bool { return p.Temperature == 0 }
