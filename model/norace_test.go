//go:build !race

package model_test

// raceEnabled is true under the race detector.
const raceEnabled = false
