package testenv

import "testing"

func TestInCI(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"true", true}, {"1", true}, {"", false}, {"false", false}} {
		t.Setenv("CI", c.v)
		if got := InCI(); got != c.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestSkipFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Skip(ft, "a peer")
	}()
	if !ft.failed || ft.skipped {
		t.Fatalf("in CI Skip must fail, not skip: failed=%v skipped=%v", ft.failed, ft.skipped)
	}
	t.Setenv("CI", "")
	ft = &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Skip(ft, "a peer")
	}()
	if ft.failed || !ft.skipped {
		t.Fatalf("outside CI Skip must skip: failed=%v skipped=%v", ft.failed, ft.skipped)
	}
}

// fakeTB records Fatalf/Skip instead of ending the real test.
type fakeTB struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fakeTB) Skip(...any)           { f.skipped = true; panic("skip") }
