package ota

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Generation is one whole, verified set of files on disk: gen-N/ under
// the state directory, with the signed manifest next to the files.
type Generation struct {
	Name     string // gen-N
	Dir      string // its directory
	Manifest *Manifest
}

// Path returns the location of a bundle file of g.
func (g *Generation) Path(file string) string { return filepath.Join(g.Dir, filepath.FromSlash(file)) }

func (g *Generation) version() uint64 {
	if g == nil || g.Manifest == nil {
		return 0
	}
	return g.Manifest.Version
}

func (g *Generation) name() string {
	if g == nil {
		return ""
	}
	return g.Name
}

// The files of the state directory.
const (
	currentFile = "current"
	goodFile    = "good"
	stateFile   = "state"
	partialExt  = ".partial"
)

// archiveOverhead is what an archive may hold beyond its files: the
// signed manifest, tar headers and padding.
const archiveOverhead = 128 << 10

// disk is the state directory.
type disk struct{ dir string }

func validGenName(s string) bool {
	n, ok := strings.CutPrefix(s, "gen-")
	if !ok {
		return false
	}
	v, err := strconv.ParseUint(n, 10, 64)
	return err == nil && strconv.FormatUint(v, 10) == n && v > 0
}

// readPointer returns the generation a pointer file names ("" when there
// is no pointer: the host's base configuration).
func (d disk) readPointer(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s != "" && !validGenName(s) {
		return "", fmt.Errorf("ota: pointer %s holds %q", name, s)
	}
	return s, nil
}

func (d disk) writePointer(name, gen, label string) error {
	return writeAtomic(d.dir, name, []byte(gen+"\n"), label)
}

func (d disk) readStatus() (Status, bool, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, false, fmt.Errorf("ota: state file: %w", err)
	}
	return s, true, nil
}

func (d disk) writeStatus(s Status) error {
	return writeAtomic(d.dir, stateFile, s.marshal(), "state:"+s.State.String())
}

// whole reports whether generation name is on disk with its manifest.
func (d disk) whole(name string) bool {
	if !validGenName(name) {
		return false
	}
	_, err := os.Stat(filepath.Join(d.dir, name, ManifestName))
	return err == nil
}

// load reads a generation's manifest (verified when it was staged).
func (d disk) load(name string) (*Generation, error) {
	if name == "" {
		return nil, nil
	}
	dir := filepath.Join(d.dir, name)
	msg, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("ota: generation %s: %w", name, err)
	}
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("ota: generation %s: %w: no signature block", name, ErrMalformed)
	}
	m, err := ParseManifest(append(text, '\n'))
	if err != nil {
		return nil, fmt.Errorf("ota: generation %s: %w", name, err)
	}
	return &Generation{Name: name, Dir: dir, Manifest: m}, nil
}

// gens lists the gen-N directories and the leftovers of interrupted
// staging (*.partial, temporary files).
func (d disk) scan() (gens []string, junk []string, err error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case validGenName(n) && e.IsDir():
			gens = append(gens, n)
		case strings.HasSuffix(n, partialExt) || strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp"):
			junk = append(junk, n)
		}
	}
	return gens, junk, nil
}

func (d disk) nextGen() (string, error) {
	gens, junk, err := d.scan()
	if err != nil {
		return "", err
	}
	var max uint64
	for _, g := range append(gens, junk...) {
		g = strings.TrimSuffix(g, partialExt)
		if v, err := strconv.ParseUint(strings.TrimPrefix(g, "gen-"), 10, 64); err == nil && v > max {
			max = v
		}
	}
	return "gen-" + strconv.FormatUint(max+1, 10), nil
}

// stage reads a bundle (a tar archive, manifest.note first) into a new
// generation. check verifies the signed manifest before anything is
// written; validate checks the complete files before the generation is
// made whole by renaming it into place. Any error removes what was
// written.
func (d disk) stage(r io.Reader, limit int64, check func(msg []byte) (*Manifest, error), validate func(g *Generation) error) (*Generation, error) {
	lr := &io.LimitedReader{R: r, N: limit + archiveOverhead + 1}
	tr := tar.NewReader(lr)
	h, err := tr.Next()
	if err != nil {
		return nil, tooLarge(lr, fmt.Errorf("%w: reading the first entry: %v", ErrMalformed, err))
	}
	if h.Name != ManifestName || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: first entry is %q, want %s", ErrMalformed, h.Name, ManifestName)
	}
	if h.Size > maxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes (limit %d)", ErrMalformed, h.Size, maxManifest)
	}
	msg, err := io.ReadAll(tr)
	if err != nil {
		return nil, tooLarge(lr, fmt.Errorf("%w: %v", ErrMalformed, err))
	}
	m, err := check(msg)
	if err != nil {
		return nil, err
	}
	if m.Size() > limit {
		return nil, fmt.Errorf("%w: files total %d bytes (limit %d)", ErrTooLarge, m.Size(), limit)
	}
	name, err := d.nextGen()
	if err != nil {
		return nil, err
	}
	partial := filepath.Join(d.dir, name+partialExt)
	hit("stage:before-mkdir")
	if err := os.Mkdir(partial, 0o755); err != nil {
		return nil, err
	}
	g := &Generation{Name: name, Dir: partial, Manifest: m}
	if err := d.fill(g, tr, lr, msg); err != nil {
		_ = os.RemoveAll(partial)
		return nil, fmt.Errorf("ota: staging %s (version %d): %w", name, m.Version, err)
	}
	if err := validate(g); err != nil {
		_ = os.RemoveAll(partial)
		return nil, err
	}
	hit("stage:before-rename")
	final := filepath.Join(d.dir, name)
	if err := os.Rename(partial, final); err != nil {
		_ = os.RemoveAll(partial)
		return nil, err
	}
	hit("stage:after-rename")
	if err := syncDir(d.dir); err != nil {
		_ = os.RemoveAll(final)
		return nil, err
	}
	hit("stage:after-dirsync")
	g.Dir = final
	return g, nil
}

func tooLarge(lr *io.LimitedReader, err error) error {
	if lr.N <= 0 {
		return fmt.Errorf("%w: more bytes than the limit", ErrTooLarge)
	}
	return err
}

// fill writes the bundle's files into g.Dir, checking each against the
// manifest, and fsyncs every file and directory.
func (d disk) fill(g *Generation, tr *tar.Reader, lr *io.LimitedReader, msg []byte) error {
	want := map[string]File{}
	for _, f := range g.Manifest.Files {
		want[f.Path] = f
	}
	dirs := map[string]bool{g.Dir: true}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return tooLarge(lr, fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		if h.Typeflag == tar.TypeDir {
			if err := CheckPath(strings.TrimSuffix(h.Name, "/")); err != nil {
				return err
			}
			continue
		}
		if err := CheckPath(h.Name); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return fmt.Errorf("%w: %s is not a regular file", ErrMalformed, h.Name)
		}
		f, ok := want[h.Name]
		if !ok {
			return fmt.Errorf("%w: %s is not in the manifest", ErrSizeMismatch, h.Name)
		}
		delete(want, h.Name)
		if h.Size != f.Size {
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrSizeMismatch, h.Name, h.Size, f.Size)
		}
		dst := g.Path(h.Name)
		if dir := filepath.Dir(dst); !dirs[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for p := dir; !dirs[p]; p = filepath.Dir(p) {
				dirs[p] = true
			}
		}
		if err := writeChecked(dst, tr, f, lr); err != nil {
			return err
		}
	}
	for p := range want {
		return fmt.Errorf("%w: %s is missing from the bundle", ErrSizeMismatch, p)
	}
	// Trailing bytes (tar padding) count against the limit too.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return err
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: more bytes than the limit", ErrTooLarge)
	}
	if err := writeFile(filepath.Join(g.Dir, ManifestName), msg); err != nil {
		return err
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	hit("stage:files-synced")
	return nil
}

func writeChecked(dst string, r io.Reader, f File, lr *io.LimitedReader) error {
	hit("stage:file:" + f.Path + ":before-write")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if err != nil {
		return tooLarge(lr, fmt.Errorf("%s: %w", f.Path, err))
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrSizeMismatch, f.Path, n, f.Size)
	}
	if !bytes.Equal(h.Sum(nil), f.SHA256[:]) {
		return fmt.Errorf("%w: %s", ErrHashMismatch, f.Path)
	}
	hit("stage:file:" + f.Path + ":after-write")
	if err := out.Sync(); err != nil {
		return err
	}
	hit("stage:file:" + f.Path + ":after-fsync")
	return out.Close()
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteBundle writes a bundle: the signed manifest, then every file the
// manifest lists, read from dir.
func WriteBundle(w io.Writer, signed []byte, dir string) error {
	b := &Bundle{Signed: signed, Files: map[string][]byte{}}
	m, _, err := b.Manifest()
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return err
		}
		b.Files[f.Path] = data
	}
	return b.Write(w)
}

// FileOf describes data as the bundle file at path p.
func FileOf(p string, data []byte) File {
	return File{Path: p, Size: int64(len(data)), SHA256: sha256.Sum256(data)}
}

// VerifyFiles re-reads every file of g and checks it against the
// manifest: a whole generation passes.
func (g *Generation) VerifyFiles() error {
	for _, f := range g.Manifest.Files {
		b, err := os.ReadFile(g.Path(f.Path))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrSizeMismatch, f.Path, err)
		}
		if int64(len(b)) != f.Size {
			return fmt.Errorf("%w: %s", ErrSizeMismatch, f.Path)
		}
		if sha256.Sum256(b) != f.SHA256 {
			return fmt.Errorf("%w: %s", ErrHashMismatch, f.Path)
		}
	}
	return nil
}
