package llava

import (
	"errors"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
)

// lostError is a backend's lost-device error (it wraps
// kernels.ErrDeviceLost and the driver's result) as the engine contract
// names it: errors.Is finds engine.ErrDeviceLost too, and the message is the
// backend's.
type lostError struct{ err error }

func (e lostError) Error() string        { return e.err.Error() }
func (e lostError) Unwrap() error        { return e.err }
func (e lostError) Is(target error) bool { return target == engine.ErrDeviceLost }

// deviceLost, deferred by EncodeImages and Forward with their error result,
// turns a lost device, whether the backend returned its error or panicked
// with it (its methods without an error result do), into a returned error
// wrapping engine.ErrDeviceLost. Other panics go on.
func deviceLost(err *error) {
	if r := recover(); r != nil {
		e, ok := r.(error)
		if !ok || !errors.Is(e, kernels.ErrDeviceLost) {
			panic(r)
		}
		*err = e
	}
	if *err != nil && errors.Is(*err, kernels.ErrDeviceLost) {
		*err = lostError{*err}
	}
}
