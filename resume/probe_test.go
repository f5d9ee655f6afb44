package resume

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

func TestHeartbeatLayout(t *testing.T) {
	h := Heartbeat{Seq: 0x123456, Time: 0x0102030405060708}
	b := h.AppendBinary(nil)
	if len(b) != HeartbeatSize {
		t.Fatalf("%d bytes", len(b))
	}
	want := []byte{1, 0x12, 0x34, 0x56, 1, 2, 3, 4, 5, 6, 7, 8}
	for i, v := range want {
		if b[i] != v {
			t.Fatalf("byte %d = %#x, want %#x (% x)", i, b[i], v, b)
		}
	}
	got, err := ParseHeartbeat(b)
	if err != nil || got != h {
		t.Fatalf("round trip %+v %v", got, err)
	}
	cases := map[string]struct {
		mut  func([]byte) []byte
		want error
	}{
		"short":       {func(b []byte) []byte { return b[:15] }, ErrHeartbeatSize},
		"long":        {func(b []byte) []byte { return append(b, 0) }, ErrHeartbeatSize},
		"version":     {func(b []byte) []byte { b[0] = 2; return b }, ErrHeartbeatVersion},
		"seq flipped": {func(b []byte) []byte { b[2] ^= 1; return b }, ErrHeartbeatCRC},
		"time flip":   {func(b []byte) []byte { b[11] ^= 0x80; return b }, ErrHeartbeatCRC},
		"crc flip":    {func(b []byte) []byte { b[15] ^= 1; return b }, ErrHeartbeatCRC},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseHeartbeat(c.mut(h.AppendBinary(nil))); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add(Heartbeat{Seq: 7, Time: 42}.AppendBinary(nil))
	f.Add(Heartbeat{Reply: true, Seq: 0xffffff, Time: -1}.AppendBinary(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeartbeat(b)
		if err != nil {
			return
		}
		if again := h.AppendBinary(nil); string(again) != string(b) {
			t.Fatalf("accepted % x but re-encodes as % x", b, again)
		}
	})
}

func TestHeartbeatProbeAgainstResponder(t *testing.T) {
	r, err := ListenHeartbeat("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := &HeartbeatProbe{Addr: r.Addr().String()}
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rtt, err := p.Probe(ctx)
		cancel()
		if err != nil || rtt <= 0 {
			t.Fatalf("probe %d: rtt %v err %v", i, rtt, err)
		}
	}
	// Close waits for the responder's loop, which counts a reply only
	// after writing it: the probe may have read the fifth reply first.
	r.Close()
	if a, _ := r.Stats(); a != 5 {
		t.Fatalf("responder answered %d, want 5", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := p.Probe(ctx); err == nil {
		t.Fatal("probe succeeded with the responder gone")
	}
}

func TestHTTPHeadProbe(t *testing.T) {
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			t.Errorf("method %s", r.Method)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	p := &HTTPHeadProbe{URL: srv.URL}
	if _, err := p.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	status = http.StatusServiceUnavailable
	if _, err := p.Probe(context.Background()); err == nil {
		t.Fatal("5xx counted as up")
	}
}

func TestICMPProbeLoopback(t *testing.T) {
	p := &ICMPProbe{Host: "127.0.0.1"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rtt, err := p.Probe(ctx)
	if err != nil {
		testenv.Skip(t, "ICMP echo needs a ping socket or CAP_NET_RAW: "+err.Error())
	}
	if rtt <= 0 {
		t.Fatalf("rtt %v", rtt)
	}
	if _, err := (&ICMPProbe{Host: "not-an-ip"}).Probe(ctx); err == nil {
		t.Fatal("bad host accepted")
	}
}

type fixedProbe struct {
	name string
	err  error
}

func (f *fixedProbe) Name() string { return f.name }
func (f *fixedProbe) Probe(context.Context) (time.Duration, error) {
	return time.Millisecond, f.err
}

func TestMonitorQuorum(t *testing.T) {
	down := errors.New("down")
	cases := []struct {
		fails  int
		quorum int
		want   Event
	}{
		{0, 2, LinkUp}, {1, 2, LinkPartial}, {2, 2, LinkDown}, {3, 2, LinkDown},
		{1, 3, LinkDown}, {2, 1, LinkPartial}, {0, 9, LinkUp},
	}
	for _, c := range cases {
		var ps []Probe
		for i := 0; i < 3; i++ {
			p := &fixedProbe{name: "p"}
			if i < c.fails {
				p.err = down
			}
			ps = append(ps, p)
		}
		m := NewMachine(MachineConfig{Logger: quietLogger()})
		mon, err := NewMonitor(MonitorConfig{Probes: ps, Quorum: c.quorum, Machine: m})
		if err != nil {
			t.Fatal(err)
		}
		if got := mon.Round(context.Background()); got != c.want {
			t.Errorf("%d of 3 failing, quorum %d: %s, want %s", c.fails, c.quorum, got, c.want)
		}
		st := mon.Stats()
		if c.fails < 3 && st[2].MeanRTT != time.Millisecond {
			t.Errorf("rtt not recorded: %+v", st[2])
		}
	}
}
