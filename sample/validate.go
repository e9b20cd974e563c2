package sample

import (
	"errors"
	"fmt"
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

// Validate checks the ranges: temperature finite and >= 0, top_p in [0, 1]
// (0 or 1: off), top_k >= 0 (0: off). Errors are *ParamError wrapping
// ErrInvalidParams.
func (p Params) Validate() error {
	t := float64(p.Temperature)
	if math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return &ParamError{"temperature", fmt.Sprintf("must be finite and >= 0, got %v", p.Temperature)}
	}
	if !(p.TopP >= 0 && p.TopP <= 1) { // also catches NaN
		return &ParamError{"top_p", fmt.Sprintf("must be in [0, 1] (0 or 1: off), got %v", p.TopP)}
	}
	if p.TopK < 0 {
		return &ParamError{"top_k", fmt.Sprintf("must be >= 0 (0: off), got %d", p.TopK)}
	}
	return nil
}

// Greedy reports whether p picks the most likely token every time.
func (p Params) Greedy() bool { return p.Temperature == 0 }
