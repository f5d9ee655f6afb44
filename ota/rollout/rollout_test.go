package rollout

import (
	"fmt"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("gw-%03d", i)
	}
	return out
}

func TestWaves(t *testing.T) {
	r, err := New(Policy{Canary: 3, BaseRate: 5, Factor: 2}, names(40))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for !r.Finished() {
		w := r.Next()
		if len(w) == 0 {
			t.Fatal("no wave while not finished")
		}
		if again := r.Next(); again != nil {
			t.Fatal("a wave started before the previous one reported")
		}
		sizes = append(sizes, len(w))
		for _, g := range w {
			r.Report(g, true)
		}
	}
	if got, want := fmt.Sprint(sizes), "[3 5 10 20 2]"; got != want {
		t.Fatalf("waves %s, want %s", got, want)
	}
	if tg, ok, bad := r.Counts(); tg != 40 || ok != 40 || bad != 0 {
		t.Fatalf("counts %d %d %d", tg, ok, bad)
	}
}

func TestAbort(t *testing.T) {
	cases := []struct {
		name      string
		fail      func(i int) bool
		minRep    int
		wantAbort bool
		targeted  int
	}{
		{"every canary fails", func(int) bool { return true }, 0, true, 5},
		{"one in five is not above 20%", func(i int) bool { return i%5 == 4 }, 0, false, 100},
		{"below M reporters nothing counts", func(i int) bool { return i == 0 }, 20, false, 100},
		{"two in the canary", func(i int) bool { return i < 2 }, 0, true, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := New(Policy{MinReporters: c.minRep}, names(100))
			i := 0
			for !r.Finished() {
				for _, g := range r.Next() {
					r.Report(g, !c.fail(i))
					i++
				}
			}
			if (r.Aborted() != "") != c.wantAbort {
				t.Fatalf("aborted %q", r.Aborted())
			}
			if tg, _, _ := r.Counts(); tg != c.targeted {
				t.Fatalf("targeted %d, want %d", tg, c.targeted)
			}
		})
	}
}

func TestPolicyErrors(t *testing.T) {
	if _, err := New(Policy{Factor: 0.5}, names(3)); err == nil {
		t.Error("factor below 1 accepted")
	}
	if _, err := New(Policy{}, []string{"a", "a"}); err == nil {
		t.Error("duplicate gateway accepted")
	}
	if _, err := New(Policy{}, nil); err == nil {
		t.Error("empty fleet accepted")
	}
}
