package modbus

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	codecmb "github.com/iotgw/gateway/codec/modbus"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
	mb "github.com/simonvetter/modbus"
)

// bitImage is a simonvetter/modbus server with 64 coils and 64 discrete
// inputs; holding and input registers are refused.
type bitImage struct {
	mu    sync.Mutex
	coils [64]bool
	di    [64]bool
}

func (s *bitImage) HandleCoils(r *mb.CoilsRequest) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := int(r.Addr) + int(r.Quantity)
	if end > len(s.coils) {
		return nil, mb.ErrIllegalDataAddress
	}
	if r.IsWrite {
		copy(s.coils[r.Addr:end], r.Args)
		return nil, nil
	}
	return append([]bool(nil), s.coils[r.Addr:end]...), nil
}

func (s *bitImage) HandleDiscreteInputs(r *mb.DiscreteInputsRequest) ([]bool, error) {
	end := int(r.Addr) + int(r.Quantity)
	if end > len(s.di) {
		return nil, mb.ErrIllegalDataAddress
	}
	return append([]bool(nil), s.di[r.Addr:end]...), nil
}

func (s *bitImage) HandleHoldingRegisters(*mb.HoldingRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalFunction
}

func (s *bitImage) HandleInputRegisters(*mb.InputRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalFunction
}

// bitSink keeps the latest value of every point the gateway publishes.
type bitSink struct {
	mu  sync.Mutex
	got map[string]bool
}

func (s *bitSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		for _, p := range m.Points {
			s.got[p.Name] = p.Value.Bool()
		}
	}
	return nil
}

func (s *bitSink) snapshot() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// e2eRanges are polled without coalescing: coil 0..12 ends mid-byte,
// coil 20..27 is a whole byte, coil 32..36 and 38..39 merge because 38
// lies in the spare bits of the first; the discrete inputs likewise.
var e2eRanges = []Range{
	{Coils, 0, 13}, {Coils, 20, 8}, {Coils, 32, 5}, {Coils, 38, 2},
	{DiscreteInputs, 1, 10}, {DiscreteInputs, 40, 3},
}

// bitPointName names the point of a bit address in the test map.
func bitPointName(t Table, a int) string { return fmt.Sprintf("%s%d", t, a) }

// e2eMap names exactly the polled bits, one point each.
func e2eMap(t *testing.T) *codecmb.RegisterMap {
	var ps []codecmb.Point
	for _, r := range e2eRanges {
		tab := codecmb.Coils
		if r.Table == DiscreteInputs {
			tab = codecmb.DiscreteInputs
		}
		for a := int(r.Address); a < int(r.Address)+int(r.Count); a++ {
			ps = append(ps, codecmb.Point{Name: bitPointName(r.Table, a), Table: tab, Address: uint16(a)})
		}
	}
	rm, err := codecmb.New(ps)
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

// TestCodecEndToEndBits polls coils and discrete inputs from real servers
// through a gateway whose codec is the codec/modbus register map, checks
// every decoded point against the server's image, and writes coils back
// through the codec.
func TestCodecEndToEndBits(t *testing.T) {
	// A pattern with no period of 2, 4 or 8, so a bit-order or offset
	// mistake shows.
	simCoil := func(a int) bool { return (a*a+3*a)%7 < 3 }
	simDI := func(a int) bool { return (a*5+1)%11 < 4 }
	servers := []struct {
		name     string
		start    func(t *testing.T) string
		coil, di func(a int) bool
	}{
		{"simonvetter", func(t *testing.T) string {
			img := &bitImage{}
			for a := range img.coils {
				img.coils[a], img.di[a] = simCoil(a), simDI(a)
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
			srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 4, Logger: discardLogger()}, img)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Stop() })
			return addr
		}, simCoil, simDI},
		// testdata/pymodbus_server.py: coil a = a%3 == 0, input a = a odd.
		{"pymodbus", func(t *testing.T) string { return startPymodbusSized(t, 64) },
			func(a int) bool { return a%3 == 0 }, func(a int) bool { return a%2 == 1 }},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			addr := s.start(t)
			c, err := New(WithLogger(quietLogger()), WithCoalescing(false, 0),
				WithDevice(Device{Name: "plc", Address: addr, Interval: 50 * time.Millisecond, Ranges: e2eRanges}))
			if err != nil {
				t.Fatal(err)
			}
			var topics []string
			for _, b := range c.Blocks("plc") {
				topics = append(topics, b.String())
			}
			if got, want := fmt.Sprint(topics), "[coil/0+13 coil/20+8 coil/32+8 di/1+10 di/40+3]"; got != want {
				t.Fatalf("blocks %s, want %s", got, want)
			}
			rm := e2eMap(t)
			sink := &bitSink{got: map[string]bool{}}
			g, err := gateway.New(gateway.WithConnector("plc", c), gateway.WithCodec("map", rm),
				gateway.WithConnectorCodec("plc", "map"), gateway.WithSink("t", sink), gateway.WithLogger(quietLogger()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			want := map[string]bool{}
			for _, r := range e2eRanges {
				f := s.coil
				if r.Table == DiscreteInputs {
					f = s.di
				}
				for a := int(r.Address); a < int(r.Address)+int(r.Count); a++ {
					want[bitPointName(r.Table, a)] = f(a)
				}
			}
			// Coils 38 and 39 also sit in the merged block with 37 (not in
			// the map, so not published).
			conntest.Eventually(t, 10*time.Second, "every polled bit decoded", func() bool { return len(sink.snapshot()) == len(want) })
			got := sink.snapshot()
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s = %v, want %v", name, got[name], w)
				}
			}
			if len(got) != len(want) {
				t.Errorf("decoded %d points, want %d: %v", len(got), len(want), got)
			}

			// Downlink: the codec packs coils 20..27, the connector writes
			// them with function 15, the next polls decode them.
			flip := make([]gateway.Point, 0, 8)
			for a := 20; a < 28; a++ {
				flip = append(flip, gateway.Point{Name: bitPointName(Coils, a), Value: gateway.Bool(!s.coil(a))})
			}
			if err := g.Write(ctx, "plc", &gateway.Message{Device: "plc", Topic: "coil/20", Points: flip}); err != nil {
				t.Fatalf("write coil/20: %v", err)
			}
			conntest.Eventually(t, 10*time.Second, "written coils read back", func() bool {
				got := sink.snapshot()
				for a := 20; a < 28; a++ {
					if got[bitPointName(Coils, a)] == s.coil(a) {
						return false
					}
				}
				return true
			})
			got = sink.snapshot()
			for _, a := range []int{12, 32, 39} { // neighbours untouched
				if n := bitPointName(Coils, a); got[n] != s.coil(a) {
					t.Errorf("%s = %v after writing coil/20, want %v", n, got[n], s.coil(a))
				}
			}
		})
	}
}

// TestTopicsMatchRegisterMapCodec: the block topics the connector emits
// and accepts are the ones package codec/modbus parses, table by table.
func TestTopicsMatchRegisterMapCodec(t *testing.T) {
	tables := []struct {
		ours   Table
		theirs codecmb.Table
	}{{HoldingRegisters, codecmb.HoldingRegisters}, {InputRegisters, codecmb.InputRegisters},
		{Coils, codecmb.Coils}, {DiscreteInputs, codecmb.DiscreteInputs}}
	for _, tt := range tables {
		for _, start := range []uint16{0, 7, 65535} {
			topic := Block{Table: tt.ours, Start: start, Count: 1}.Topic()
			cb, err := codecmb.ParseBlock(topic)
			if err != nil || cb.Table != tt.theirs || cb.Start != start {
				t.Errorf("codec parses our %q as %v, %v", topic, cb, err)
			}
			theirs := codecmb.Block{Table: tt.theirs, Start: start}.String()
			tab, a, err := ParseTopic("plc1/" + theirs)
			if err != nil || tab != tt.ours || a != start {
				t.Errorf("we parse the codec's %q as %v/%d, %v", theirs, tab, a, err)
			}
		}
	}
	if _, _, err := ParseTopic("co/0"); err == nil {
		t.Error(`ParseTopic accepted "co/0"; topics name coils "coil"`)
	}
}
