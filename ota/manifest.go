package ota

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header is the first line of every manifest.
const Header = "iotgw-ota-bundle v1"

// ManifestName is the name of the signed manifest inside a bundle and in
// every generation directory.
const ManifestName = "manifest.note"

// maxManifest bounds the signed manifest (text and signatures).
const maxManifest = 64 << 10

// Manifest is the signed description of a bundle.
type Manifest struct {
	Name    string
	Version uint64
	Created time.Time
	Expires time.Time
	// Target selects gateways: every Names pattern is a path.Match glob
	// against the gateway's name (any may match), every Labels entry
	// must equal the gateway's label. Empty: every gateway.
	Target Target
	// Rollback marks an explicitly signed rollback bundle: its version
	// may be at or below the running one.
	Rollback bool
	// Trust, when set, replaces the trusted keys and Threshold their
	// count once this bundle is accepted (key rotation).
	Trust     []string
	Threshold int
	Files     []File
}

// Target is a manifest's gateway selector.
type Target struct {
	Names  []string
	Labels map[string]string
}

// File is one file of a bundle.
type File struct {
	Path   string
	Size   int64
	SHA256 [32]byte
}

// Size is the sum of the file sizes.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Matches reports whether the target selects a gateway with this name and
// these labels.
func (t Target) Matches(name string, labels map[string]string) bool {
	if len(t.Names) > 0 {
		ok := false
		for _, p := range t.Names {
			if m, _ := path.Match(p, name); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range t.Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Format returns the manifest text, the part that is signed.
func (m *Manifest) Format() []byte {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	fmt.Fprintf(&b, "name %s\n", m.Name)
	fmt.Fprintf(&b, "version %d\n", m.Version)
	fmt.Fprintf(&b, "created %s\n", m.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "expires %s\n", m.Expires.UTC().Format(time.RFC3339))
	for _, n := range m.Target.Names {
		fmt.Fprintf(&b, "target name %s\n", n)
	}
	for _, k := range sortedKeys(m.Target.Labels) {
		fmt.Fprintf(&b, "target label %s=%s\n", k, m.Target.Labels[k])
	}
	if m.Rollback {
		b.WriteString("rollback\n")
	}
	for _, k := range m.Trust {
		fmt.Fprintf(&b, "trust %s\n", k)
	}
	if m.Threshold > 0 {
		fmt.Fprintf(&b, "threshold %d\n", m.Threshold)
	}
	for _, f := range m.Files {
		fmt.Fprintf(&b, "file %x %d %s\n", f.SHA256, f.Size, f.Path)
	}
	return b.Bytes()
}

// ParseManifest parses a manifest text (the signed part of the note).
// Errors wrap ErrMalformed or, for a bad file path, ErrPath.
func ParseManifest(text []byte) (*Manifest, error) {
	if len(text) > maxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes (limit %d)", ErrMalformed, len(text), maxManifest)
	}
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return nil, fmt.Errorf("%w: manifest does not end in a newline", ErrMalformed)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if lines[0] != Header {
		return nil, fmt.Errorf("%w: line 1: want %q", ErrMalformed, Header)
	}
	m := &Manifest{}
	seen := map[string]bool{}
	paths := map[string]bool{}
	once := func(n int, key string) error {
		if seen[key] {
			return fmt.Errorf("%w: line %d: %s given twice", ErrMalformed, n, key)
		}
		seen[key] = true
		return nil
	}
	for i, line := range lines[1:] {
		n := i + 2
		key, rest, _ := strings.Cut(line, " ")
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d (%s): %s", ErrMalformed, n, key, fmt.Sprintf(format, args...))
		}
		if strings.ContainsAny(rest, "\t\r") || strings.HasSuffix(rest, " ") {
			return nil, bad("stray whitespace")
		}
		switch key {
		case "name", "version", "created", "expires", "threshold":
			if err := once(n, key); err != nil {
				return nil, err
			}
		}
		switch key {
		case "name":
			if rest == "" || strings.Contains(rest, " ") {
				return nil, bad("want one word")
			}
			m.Name = rest
		case "version":
			v, err := strconv.ParseUint(rest, 10, 64)
			if err != nil || v == 0 || strconv.FormatUint(v, 10) != rest {
				return nil, bad("want a positive integer")
			}
			m.Version = v
		case "created", "expires":
			t, err := time.Parse(time.RFC3339, rest)
			if err != nil {
				return nil, bad("want an RFC 3339 time")
			}
			if key == "created" {
				m.Created = t
			} else {
				m.Expires = t
			}
		case "target":
			kind, v, _ := strings.Cut(rest, " ")
			switch kind {
			case "name":
				if _, err := path.Match(v, ""); err != nil || v == "" || strings.Contains(v, " ") {
					return nil, bad("bad name pattern %q", v)
				}
				m.Target.Names = append(m.Target.Names, v)
			case "label":
				k, val, ok := strings.Cut(v, "=")
				if !ok || k == "" || strings.Contains(v, " ") {
					return nil, bad("want label key=value")
				}
				if m.Target.Labels == nil {
					m.Target.Labels = map[string]string{}
				}
				if _, dup := m.Target.Labels[k]; dup {
					return nil, bad("label %q given twice", k)
				}
				m.Target.Labels[k] = val
			default:
				return nil, bad("want target name or target label")
			}
		case "rollback":
			if rest != "" || m.Rollback {
				return nil, bad("rollback takes no value and appears once")
			}
			m.Rollback = true
		case "trust":
			if _, err := parseVerifier(rest); err != nil {
				return nil, bad("%v", err)
			}
			m.Trust = append(m.Trust, rest)
		case "threshold":
			v, err := strconv.Atoi(rest)
			if err != nil || v < 1 || strconv.Itoa(v) != rest {
				return nil, bad("want a positive integer")
			}
			m.Threshold = v
		case "file":
			f, err := parseFileLine(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if paths[f.Path] {
				return nil, bad("file %q listed twice", f.Path)
			}
			paths[f.Path] = true
			m.Files = append(m.Files, f)
		default:
			return nil, bad("unknown key")
		}
	}
	for _, k := range []string{"name", "version", "created", "expires"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: %s missing", ErrMalformed, k)
		}
	}
	if !m.Expires.After(m.Created) {
		return nil, fmt.Errorf("%w: expires is not after created", ErrMalformed)
	}
	if len(m.Trust) > 0 != (m.Threshold > 0) {
		return nil, fmt.Errorf("%w: trust and threshold go together", ErrMalformed)
	}
	if m.Threshold > len(m.Trust) {
		return nil, fmt.Errorf("%w: threshold %d above the %d trusted keys", ErrMalformed, m.Threshold, len(m.Trust))
	}
	return m, nil
}

func parseFileLine(rest string) (File, error) {
	parts := strings.SplitN(rest, " ", 3)
	if len(parts) != 3 {
		return File{}, fmt.Errorf("%w: want file <sha256> <size> <path>", ErrMalformed)
	}
	var f File
	h, err := hex.DecodeString(parts[0])
	if err != nil || len(h) != 32 || hex.EncodeToString(h) != parts[0] {
		return File{}, fmt.Errorf("%w: bad sha256 %q", ErrMalformed, parts[0])
	}
	copy(f.SHA256[:], h)
	f.Size, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil || f.Size < 0 || strconv.FormatInt(f.Size, 10) != parts[1] {
		return File{}, fmt.Errorf("%w: bad size %q", ErrMalformed, parts[1])
	}
	if err := CheckPath(parts[2]); err != nil {
		return File{}, err
	}
	f.Path = parts[2]
	return f, nil
}

// CheckPath accepts a bundle path: relative, slash-separated, in clean
// form, inside the bundle root, not the manifest itself, no spaces or
// control characters. Errors wrap ErrPath.
func CheckPath(p string) error {
	switch {
	case p == "" || p == "." || p == ManifestName:
		return fmt.Errorf("%w: %q is reserved", ErrPath, p)
	case strings.ContainsAny(p, " \\\x00") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: %q has a space, backslash or control character", ErrPath, p)
	case path.IsAbs(p) || filepath.IsAbs(p) || filepath.VolumeName(p) != "":
		return fmt.Errorf("%w: %q is absolute", ErrPath, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: %q is not in clean form", ErrPath, p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("%w: %q leaves the root", ErrPath, p)
	case strings.HasSuffix(p, ".partial") || strings.HasPrefix(p, ".") || strings.Contains(p, "/."):
		return fmt.Errorf("%w: %q: hidden or reserved name", ErrPath, p)
	}
	return nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
