//go:build race

package mqtt

// raceEnabled: the race detector doubles the stack guard and grows frames.
const raceEnabled = true
