//go:build race

package model_test

// raceEnabled is true under the race detector, which makes the 576-token
// geometry too slow for a unit test; the tiny cases exercise the same code.
const raceEnabled = true
