//go:build !race

package batcher_test

// raceEnabled reports a -race build, where the model test is too slow.
const raceEnabled = false
