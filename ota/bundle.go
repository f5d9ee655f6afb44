package ota

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
)

// Bundle is a bundle read into memory, for tools (inspect, verify,
// cosign). Gateways stream bundles with Updater.Update instead.
type Bundle struct {
	Signed []byte            // manifest.note
	Files  map[string][]byte // by path
}

// ReadBundle reads a whole bundle of at most limit bytes of files.
func ReadBundle(r io.Reader, limit int64) (*Bundle, error) {
	lr := &io.LimitedReader{R: r, N: limit + archiveOverhead + 1}
	tr := tar.NewReader(lr)
	b := &Bundle{Files: map[string][]byte{}}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, tooLarge(lr, fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		if i == 0 {
			if h.Name != ManifestName {
				return nil, fmt.Errorf("%w: first entry is %q, want %s", ErrMalformed, h.Name, ManifestName)
			}
			if b.Signed, err = io.ReadAll(io.LimitReader(tr, maxManifest+1)); err != nil {
				return nil, err
			}
			continue
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if err := CheckPath(h.Name); err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrMalformed, h.Name)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, tooLarge(lr, err)
		}
		b.Files[h.Name] = data
	}
	if b.Signed == nil {
		return nil, fmt.Errorf("%w: empty archive", ErrMalformed)
	}
	return b, nil
}

// Manifest parses the manifest without checking signatures.
func (b *Bundle) Manifest() (*Manifest, []string, error) {
	text, sigs, ok := bytes.Cut(b.Signed, []byte("\n\n"))
	if !ok {
		return nil, nil, fmt.Errorf("%w: no signature block", ErrMalformed)
	}
	m, err := ParseManifest(append(text, '\n'))
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, l := range bytes.Split(bytes.TrimSpace(sigs), []byte("\n")) {
		if f := bytes.Fields(l); len(f) == 3 {
			names = append(names, string(f[1]))
		}
	}
	return m, names, nil
}

// Verify checks the signatures against t and every file against the
// manifest (hashes, sizes, nothing missing or extra). It returns the
// manifest and the trusted signers.
func (b *Bundle) Verify(t Trust) (*Manifest, []string, error) {
	m, signers, err := OpenManifest(b.Signed, t)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		data, ok := b.Files[f.Path]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %s is missing from the bundle", ErrSizeMismatch, f.Path)
		}
		seen[f.Path] = true
		if int64(len(data)) != f.Size {
			return nil, nil, fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrSizeMismatch, f.Path, len(data), f.Size)
		}
		if sha256.Sum256(data) != f.SHA256 {
			return nil, nil, fmt.Errorf("%w: %s", ErrHashMismatch, f.Path)
		}
	}
	for p := range b.Files {
		if !seen[p] {
			return nil, nil, fmt.Errorf("%w: %s is not in the manifest", ErrSizeMismatch, p)
		}
	}
	return m, signers, nil
}

// Write writes the bundle: the manifest first, then the files in path
// order.
func (b *Bundle) Write(w io.Writer) error {
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ManifestName, b.Signed); err != nil {
		return err
	}
	paths := make([]string, 0, len(b.Files))
	for p := range b.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := add(p, b.Files[p]); err != nil {
			return err
		}
	}
	return tw.Close()
}
