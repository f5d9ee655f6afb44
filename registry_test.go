package gateway

import "testing"

// TestRegistryLookupConnector: a registered kind's factory comes back, so
// a host can wrap it; an unknown kind gives nil.
func TestRegistryLookupConnector(t *testing.T) {
	r := NewRegistry()
	called := false
	if err := r.AddConnector("k", func(string, Section) (DeviceConnector, error) { called = true; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	f := r.LookupConnector("k")
	if f == nil {
		t.Fatal("registered kind not found")
	}
	if _, _ = f("n", Section{}); !called {
		t.Fatal("LookupConnector returned another factory")
	}
	if r.LookupConnector("other") != nil {
		t.Fatal("unknown kind found")
	}
}
