package dtlsx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadKeyRingFile: the highest id seals, the others still open, and
// a bad file names its line without echoing a key.
func TestLoadKeyRingFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	k1, k2 := strings.Repeat("11", 32), strings.Repeat("22", 16)
	old, err := LoadKeyRingFile(write("old", "1 "+k1+"\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	id, sealed, err := old.seal(nil, []byte("session"), []byte("aad"))
	if err != nil || id != 1 {
		t.Fatalf("seal: id %d, %v", id, err)
	}
	r, err := LoadKeyRingFile(write("ring", "# rotated\n\n7 "+k2+"\n1 "+k1+"\n", 0o400))
	if err != nil {
		t.Fatal(err)
	}
	if r.ActiveID() != 7 {
		t.Fatalf("active %d, want 7 (the highest id)", r.ActiveID())
	}
	if pt, err := r.open(1, sealed, []byte("aad")); err != nil || !bytes.Equal(pt, []byte("session")) {
		t.Fatalf("open a record of the previous key: %q, %v", pt, err)
	}
	for _, tt := range []struct{ text, want string }{
		{"", "no keys"},
		{"# only a comment\n", "no keys"},
		{"1\n", "line 1: want \"id hexkey\""},
		{"x " + k1 + "\n", "line 1: key id \"x\" is not a number"},
		{"4294967296 " + k1 + "\n", "line 1: key id"},
		{"\n2 zz" + k1[2:] + "\n", "line 2: key 2 is not hex"},
		{"3 0011\n", "line 1: key 3 is 2 bytes, want 16, 24 or 32"},
		{"1 " + k1 + "\n1 " + k2 + "\n", "line 2: key id 1 defined twice"},
	} {
		_, err := LoadKeyRingFile(write("bad", tt.text, 0o600))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.text, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), k1) || strings.Contains(err.Error(), k2)) {
			t.Errorf("%q: error echoes a key: %v", tt.text, err)
		}
	}
	if _, err := LoadKeyRingFile(write("open", "1 "+k1+"\n", 0o640)); err == nil || !strings.Contains(err.Error(), "mode 0640") {
		t.Errorf("group-readable file: err %v", err)
	}
	if _, err := LoadKeyRingFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err %v", err)
	}
}

func FuzzParseKeyRing(f *testing.F) {
	f.Add("1 " + strings.Repeat("ab", 16) + "\n")
	f.Add("# c\n2 " + strings.Repeat("01", 32) + "\n9 " + strings.Repeat("fe", 24) + "\n")
	f.Add("1 00\n")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseKeyRing(scanner(s))
		if err != nil {
			return
		}
		id, sealed, err := r.seal(nil, []byte("x"), nil)
		if err != nil || id != r.ActiveID() {
			t.Fatalf("seal with active %d: id %d, %v", r.ActiveID(), id, err)
		}
		if pt, err := r.open(id, sealed, nil); err != nil || string(pt) != "x" {
			t.Fatalf("open: %q, %v", pt, err)
		}
	})
}
