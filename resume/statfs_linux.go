package resume

import "golang.org/x/sys/unix"

// fsSpace returns the space available to unprivileged writers on the file
// system holding dir, and the file system's size.
func fsSpace(dir string) (free, size int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), true
}
