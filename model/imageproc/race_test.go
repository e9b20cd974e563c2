//go:build race

package imageproc

// raceEnabled: the tests run under the race detector.
const raceEnabled = true
