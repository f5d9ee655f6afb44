package limitread

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestAppend(t *testing.T) {
	tests := []struct {
		in      string
		max     int64
		want    string
		wantErr error
	}{
		{"", 10, "pre", nil},
		{"abc", 3, "preabc", nil},
		{"abcd", 3, "", ErrTooLarge},
		{strings.Repeat("x", 5000), 5000, "pre" + strings.Repeat("x", 5000), nil},
	}
	for _, tt := range tests {
		got, err := Append([]byte("pre"), strings.NewReader(tt.in), tt.max)
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("Append(%d bytes, %d): err %v, want %v", len(tt.in), tt.max, err, tt.wantErr)
		}
		if err == nil && !bytes.Equal(got, []byte(tt.want)) {
			t.Fatalf("Append = %q, want %q", got, tt.want)
		}
	}
	buf := make([]byte, 0, 64)
	got, _ := Append(buf, strings.NewReader("reuse"), 10)
	if &got[:1][0] != &buf[:1][0] {
		t.Error("a buffer with room was reallocated")
	}
}
