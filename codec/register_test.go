package codec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// captureSink hands every published message to a channel.
type captureSink struct{ ch chan *gateway.Message }

func (s *captureSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	for _, m := range msgs {
		select {
		case s.ch <- m.Clone():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

const siteYAML = `
codecs:
  - name: site
    select:
      rules:
        - device: boiler
          codec:
            modbus:
              points:
                - {name: pressure, address: 0, type: uint16, scale: 0.1, unit: bar}
        - name: plc
          topic: "hr/#"
          codec:
            mapping:
              source: |
                temperature: s16(hr[0]) * 0.1 unit "C"
                s16(hr[0]) = round(temperature * 10)
        - device: "th-*"
          codec: {json: {units: {t: C}}}
        - topic: "frames/packed"
          codec:
            layout:
              fields:
                - {name: level, type: uint16, offset: 0, scale: 0.5, unit: cm}
                - {name: ok, type: bool, offset: 2, bit: 0}
      default: {raw: {}}
`

func newGateway(t *testing.T, yaml string) (*gateway.Gateway, chan *gateway.Message) {
	t.Helper()
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sink := &captureSink{ch: make(chan *gateway.Message, 16)}
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("capture", sink),
		gateway.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	})
	return g, sink.ch
}

func TestSelectFromYAML(t *testing.T) {
	g, out := newGateway(t, siteYAML)
	frames := []struct {
		device, topic string
		payload       []byte
		want          string
	}{
		{"plc-1", "hr/0", []byte{0x00, 0xd7}, "[{temperature 21.5 C}]"},
		{"th-7", "sensors/th-7", []byte(`{"t":20.5,"rh":40}`), "[{t 20.5 C} {rh 40 }]"},
		{"tank", "frames/packed", []byte{0x00, 0x64, 0x01}, "[{level 50 cm} {ok true }]"},
		{"boiler", "hr/0", []byte{0x00, 0x0f}, "[{pressure 1.5 bar}]"},
		{"other", "misc", []byte("hi"), "[{raw hi }]"},
	}
	for _, f := range frames {
		fr := gateway.AcquireFrame()
		fr.Device, fr.Topic = f.device, f.topic
		fr.Payload = append(fr.Payload, f.payload...)
		if err := g.Inject(context.Background(), fr); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-out:
			if got := fmt.Sprint(m.Points); got != f.want || m.Device != f.device {
				t.Errorf("%s %s: %s %s, want %s", f.device, f.topic, m.Device, got, f.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no message", f.topic)
		}
	}
}

func TestSelectEncode(t *testing.T) {
	m1, err := NewSelect([]Rule{{Topic: "a/#", Codec: NewJSON(JSONConfig{})}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m1.Encode(&gateway.Message{Topic: "a/b", Points: []gateway.Point{{Name: "x", Value: gateway.Int(1)}}}, nil)
	if err != nil || string(out) != `{"x":1}` {
		t.Fatalf("%s %v", out, err)
	}
	if _, err := m1.Encode(&gateway.Message{Topic: "b"}, nil); !errors.Is(err, ErrNoCodec) {
		t.Fatalf("unmatched encode: %v", err)
	}
	if err := m1.Decode(&gateway.Frame{Device: "d", Topic: "b"}, &gateway.Message{}); !errors.Is(err, ErrNoCodec) || !strings.Contains(err.Error(), `"d"`) {
		t.Fatalf("unmatched decode: %v", err)
	}
	c2, _ := NewSelect([]Rule{{Connector: "mb", Device: "x", Codec: NewJSON(JSONConfig{})}}, gateway.RawCodec{})
	m := &gateway.Message{}
	if err := c2.Decode(&gateway.Frame{Connector: "other", Device: "x", Payload: []byte("{}")}, m); err != nil || len(m.Points) != 1 || m.Points[0].Name != "raw" {
		t.Fatalf("connector condition: %v %v", m.Points, err)
	}
	for _, bad := range []Rule{{Topic: "a/#/b", Codec: gateway.RawCodec{}}, {Device: "x*y", Codec: gateway.RawCodec{}}, {Topic: "a"}} {
		if _, err := NewSelect([]Rule{bad}, nil); err == nil {
			t.Errorf("NewSelect accepted %+v", bad)
		}
	}
}

func TestRegisterErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"codecs:\n  - name: a\n    layout: {fields: [{name: x, type: int7}]}\n", "codecs[0].layout.fields: fields[0]: unknown type \"int7\""},
		{"codecs:\n  - name: a\n    layout: {feilds: []}\n", "codecs[0].layout.feilds: unknown key"},
		{"codecs:\n  - name: a\n    modbus: {order: xyz, points: [{name: x}]}\n", "codecs[0].modbus.order"},
		{"codecs:\n  - name: a\n    modbus: {points: [{name: x, table: zz}]}\n", "codecs[0].modbus.points[0].table: unknown Modbus table \"zz\""},
		{"codecs:\n  - name: a\n    json: {form: xml}\n", "codecs[0].json.form: want object or array"},
		{"codecs:\n  - name: a\n    mapping: {source: \"t: hr[0] +\"}\n", "codecs[0].mapping.source: 1:11: want a number"},
		{"codecs:\n  - name: a\n    raw: {x: 1}\n", "codecs[0].raw.x: unknown key"},
		{"codecs:\n  - name: a\n    select: {rules: [{codec: {bogus: {}}}]}\n", "codecs[0].select.rules[0].codec.bogus: unknown codec kind \"bogus\""},
		{"codecs:\n  - name: a\n    select: {rules: [{codec: {json: {}, raw: {}}}]}\n", "want exactly one codec kind"},
		{"codecs:\n  - name: a\n    select: {rules: [{topic: \"a/#/b\", codec: {json: {}}}]}\n", "rules[0].topic"},
		{"codecs:\n  - name: a\n    select: {rules: []}\n", "at least one rule"},
		{"codecs:\n  - name: a\n    select: {rules: [{topic: x}]}\n", "codec is required"},
	}
	for _, c := range cases {
		reg := gateway.NewRegistry()
		if err := Register(reg); err != nil {
			t.Fatal(err)
		}
		cfg, err := gateway.ParseConfig([]byte(c.yaml), "bad.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
	reg := gateway.NewRegistry()
	if err := Register(reg, Kind{Name: "json", Factory: jsonFactory}); err == nil {
		t.Error("Register accepted a duplicate kind")
	}
}

// A host kind registered through Register can be nested in select rules.
func TestRegisterExtraKind(t *testing.T) {
	reg := gateway.NewRegistry()
	upper := Kind{Name: "upper", Factory: func(name string, spec gateway.Section) (gateway.Codec, error) {
		return gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
			m.AddPoint("text", gateway.String(strings.ToUpper(string(f.Payload))), "")
			return nil
		}}, nil
	}}
	if err := Register(reg, upper); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte("codecs:\n  - name: s\n    select: {rules: [{topic: t, codec: {upper: {}}}]}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg)); err != nil {
		t.Fatal(err)
	}
}
