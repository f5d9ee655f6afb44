package shaping

import (
	"testing"
	"time"
)

func TestSamplerPolicy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at    time.Duration // since t0
		route bool
		util  float64
		lost  uint64
		want  uint32
	}
	tests := []struct {
		name  string
		cfg   SamplingConfig
		steps []step
	}{
		{"normal is 1:1000", SamplingConfig{}, []step{{at: 0, want: 1000}}},
		{"route gives 1:100 for 60s", SamplingConfig{}, []step{
			{at: 0, route: true, want: 100}, {at: 59 * time.Second, want: 100}, {at: 61 * time.Second, want: 1000}}},
		{"busy link gives 1:5000, also over a new route", SamplingConfig{}, []step{
			{at: 0, util: 0.95, want: 5000}, {at: time.Second, route: true, util: 0.95, want: 5000},
			{at: 2 * time.Second, util: 0.5, want: 100}}},
		{"90% exactly is not busy", SamplingConfig{}, []step{{at: 0, util: 0.90, want: 1000}}},
		{"repeated loss doubles, clean intervals halve", SamplingConfig{}, []step{
			{at: 0, lost: 1, want: 1000}, {at: 1, lost: 5, want: 2000}, {at: 2, lost: 1, want: 2000}, {at: 3, lost: 1, want: 4000},
			{at: 4, want: 4000}, {at: 5, want: 4000}, {at: 6, want: 4000}, {at: 7, want: 4000},
			{at: 8, want: 4000}, {at: 9, want: 4000}, {at: 10, want: 4000}, {at: 11, want: 2000}}},
		{"back-off is capped at 64x", SamplingConfig{Every: 10}, func() []step {
			var s []step
			for i := range 40 {
				s = append(s, step{at: time.Duration(i), lost: 1, want: 0})
			}
			s[len(s)-1].want = 640
			return s
		}()},
		{"custom values", SamplingConfig{Every: 50, AfterRoute: 5, RouteHold: time.Second, Busy: 7, BusyPercent: 50}, []step{
			{at: 0, want: 50}, {at: 1, route: true, want: 5}, {at: 2 * time.Second, util: 0.6, want: 7}}},
		{"negative disables", SamplingConfig{Every: -1}, []step{{at: 0, route: true, want: 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSampler(tt.cfg)
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				if st.route {
					s.RouteAdded(now)
				}
				s.Observe(st.util, st.lost)
				if got := s.EveryAt(now); st.want != 0 || tt.cfg.Every < 0 {
					if got != st.want {
						t.Fatalf("step %d: 1:%d, want 1:%d", i, got, st.want)
					}
				}
			}
		})
	}
}

func FuzzParseRouteMessage(f *testing.F) {
	f.Add([]byte{2, 24, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{10, 64, 0, 0, 255, 2, 254, 2, 0, 0, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseRouteMessage(b)
		if len(b) < 12 {
			if err == nil {
				t.Fatal("short message accepted")
			}
			return
		}
		if err != nil || m.Family != b[0] || m.Table != b[4] || m.Type != b[7] {
			t.Fatalf("parse %x: %+v %v", b, m, err)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	ev := make([]byte, eventSize)
	ev[16], ev[17] = 0x00, 0x08 // IPv4 in native (little) endian
	f.Add(ev)
	f.Add(make([]byte, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if len(b) < eventSize {
			if err == nil {
				t.Fatal("short event accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if (e.EtherType == 0x0800) != e.Src.Is4() || (e.EtherType == 0x86DD) != e.Src.Is6() {
			t.Fatalf("addresses %v for ethertype %#x", e.Src, e.EtherType)
		}
	})
}
