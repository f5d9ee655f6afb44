package intern

import (
	"strconv"
	"testing"
)

func TestTableReusesAndBounds(t *testing.T) {
	tb := New(2)
	a := tb.Bytes([]byte("alpha"))
	if a != "alpha" {
		t.Fatalf("got %q", a)
	}
	allocs := testing.AllocsPerRun(100, func() { _ = tb.Bytes([]byte("alpha")) })
	if allocs != 0 {
		t.Fatalf("interned lookup allocates %v times", allocs)
	}
	for i := 0; i < 10; i++ {
		s := strconv.Itoa(i)
		if got := tb.Bytes([]byte(s)); got != s {
			t.Fatalf("got %q want %q", got, s)
		}
	}
	if tb.Len() != 2 {
		t.Fatalf("table holds %d strings, limit 2", tb.Len())
	}
	if tb.Bytes(nil) != "" {
		t.Fatal("empty input")
	}
}
