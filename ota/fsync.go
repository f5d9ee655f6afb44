package ota

import (
	"fmt"
	"os"
	"path/filepath"
)

// crashPoint, when set (tests only), is called at every step of an update
// where a power cut or kill -9 could land: before and after each write,
// fsync and rename. The crash-injection test kills the process there.
var crashPoint func(point string)

func hit(point string) {
	if crashPoint != nil {
		crashPoint(point)
	}
}

// writeAtomic replaces dir/name with data: write a temporary file, fsync
// it, rename it over the old one, fsync the directory. A crash at any
// step leaves the old content or the new one, never a mix.
func writeAtomic(dir, name string, data []byte, label string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	hit(label + ":before-write")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	hit(label + ":after-write")
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	hit(label + ":after-fsync")
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	hit(label + ":after-rename")
	if err := syncDir(dir); err != nil {
		return err
	}
	hit(label + ":after-dirsync")
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
