//go:build !linux

package resume

// freeBytes is not known on this platform; the MinFreeBytes check is off.
func freeBytes(dir string) (int64, bool) { return 0, false }
