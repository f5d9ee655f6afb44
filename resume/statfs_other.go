//go:build !linux

package resume

// fsSpace is not known on this platform; the MinFreeBytes check is off.
func fsSpace(dir string) (free, size int64, ok bool) { return 0, 0, false }
