package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway"
)

// Command is the JSON payload of a downlink command, the mirror of the
// uplink envelope:
//
//	{"id":"<32 hex digits, optional>",
//	 "points":[{"name":"setpoint","value":21.5,"unit":"C"}],
//	 "tags":{"origin":"console"}}
//
// Integer JSON numbers become int points, other numbers float points,
// strings string points and booleans bool points. The target is the topic:
// <command_topic>/<connector>/<device>[/<device topic>]. The result goes
// to <response_topic>/<connector>/<device> as
//
//	{"id":"...","ok":true}  or  {"id":"...","ok":false,"error":"..."}
type Command struct {
	ID     string            `json:"id"`
	Points []CommandPoint    `json:"points"`
	Tags   map[string]string `json:"tags"`
}

// CommandPoint is one value of a Command.
type CommandPoint struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Unit  string          `json:"unit"`
}

// ParseCommand decodes a command addressed by topic (relative to the
// command prefix: "<connector>/<device>[/<device topic>]") into m.
func ParseCommand(rel string, payload []byte, m *gateway.Message) (connector string, err error) {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", fmt.Errorf("command topic %q: want <connector>/<device>[/<topic>]", rel)
	}
	connector, m.Device = parts[0], parts[1]
	if len(parts) == 3 {
		m.Topic = parts[2]
	}
	var c Command
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return connector, fmt.Errorf("command for %s/%s: %w", connector, m.Device, err)
	}
	if dec.More() {
		return connector, fmt.Errorf("command for %s/%s: data after the JSON object", connector, m.Device)
	}
	if c.ID != "" {
		id, err := gateway.ParseMessageID(c.ID)
		if err != nil {
			return connector, fmt.Errorf("command for %s/%s: id: %w", connector, m.Device, err)
		}
		m.ID = id
	}
	if len(c.Points) == 0 {
		return connector, fmt.Errorf("command for %s/%s: no points", connector, m.Device)
	}
	for i, p := range c.Points {
		if p.Name == "" {
			return connector, fmt.Errorf("command for %s/%s: points[%d]: name is required", connector, m.Device, i)
		}
		v, err := parseValue(p.Value)
		if err != nil {
			return connector, fmt.Errorf("command for %s/%s: points[%d] %s: %w", connector, m.Device, i, p.Name, err)
		}
		m.AddPoint(p.Name, v, p.Unit)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Tags)) {
		m.Tags = m.Tags.Set(k, c.Tags[k])
	}
	return connector, nil
}

func parseValue(raw json.RawMessage) (gateway.Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return gateway.Value{}, errors.New("value is required")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return gateway.Value{}, err
		}
		return gateway.String(s), nil
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return gateway.Value{}, err
		}
		return gateway.Bool(b), nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return gateway.Value{}, fmt.Errorf("value must be a number, string or bool: %w", err)
	}
	if i, err := n.Int64(); err == nil {
		return gateway.Int(i), nil
	}
	f, err := n.Float64()
	if err != nil {
		return gateway.Value{}, fmt.Errorf("number %s: %w", n, err)
	}
	return gateway.Float(f), nil
}

// commandRunner writes commands to devices one at a time from a bounded
// queue, off paho's receive goroutine so a slow device write never holds up
// the acknowledgements of uplink publishes.
type commandRunner struct {
	s          *Sink
	q          chan received
	ids        *gateway.IDGenerator
	ok, failed atomic.Uint64
}

type received struct {
	topic   string
	payload []byte
}

func newCommandRunner(s *Sink) *commandRunner {
	return &commandRunner{s: s, q: make(chan received, s.cfg.CommandQueue), ids: gateway.NewIDGenerator()}
}

// receive is paho's message handler for the command subscription.
func (r *commandRunner) receive(c paho.Client, msg paho.Message) {
	topic := msg.Topic()
	if strings.HasPrefix(topic, r.s.cfg.ResponseTopic+"/") {
		return // our own results under the default <command_topic>/result
	}
	select {
	case r.q <- received{topic: topic, payload: append([]byte(nil), msg.Payload()...)}:
	default:
		rel := strings.TrimPrefix(topic, r.s.cfg.CommandTopic+"/")
		conn, dev, _ := strings.Cut(rel, "/")
		dev, _, _ = strings.Cut(dev, "/")
		r.failed.Add(1)
		r.respond(c, conn, dev, "", errors.New("command queue full; try again"))
	}
}

func (r *commandRunner) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case rc := <-r.q:
			r.handle(ctx, rc)
		}
	}
}

func (r *commandRunner) handle(runCtx context.Context, rc received) {
	s := r.s
	rel := strings.TrimPrefix(rc.topic, s.cfg.CommandTopic+"/")
	m := &gateway.Message{}
	conn, err := ParseCommand(rel, rc.payload, m)
	if err == nil && m.ID.IsZero() {
		m.ID = r.ids.Next()
	}
	if err == nil {
		if s.writer == nil {
			err = fmt.Errorf("no downlink attached to this sink: %w", gateway.ErrNotSupported)
		} else {
			ctx, cancel := context.WithTimeout(runCtx, s.cfg.CommandTimeout)
			err = s.writer.Write(ctx, conn, m)
			cancel()
		}
	}
	if err != nil {
		r.failed.Add(1)
		s.log.Warn("mqtt sink: command failed", "topic", rc.topic, "err", err)
	} else {
		r.ok.Add(1)
	}
	id := ""
	if !m.ID.IsZero() {
		id = m.ID.String()
	}
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	r.respond(c, conn, m.Device, id, err)
}

func (r *commandRunner) respond(c paho.Client, conn, dev, id string, err error) {
	if conn == "" || dev == "" || c == nil {
		return
	}
	b := append([]byte(nil), `{"id":`...)
	b = appendQuoted(b, id)
	if err == nil {
		b = append(b, `,"ok":true}`...)
	} else {
		b = append(b, `,"ok":false,"error":`...)
		b = appendQuoted(b, err.Error())
		b = append(b, '}')
	}
	// Not waited for: the result is best effort at QoS 1, paho resends it.
	c.Publish(r.s.cfg.ResponseTopic+"/"+conn+"/"+dev, 1, false, b)
}

func appendQuoted(dst []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(dst, q...)
}

// Downlink is a CommandWriter bound late: give it to Register or
// WithCommands before the gateway exists, and Bind the gateway after
// gateway.New. Until then commands fail with gateway.ErrNoRoute.
type Downlink struct {
	w atomic.Pointer[CommandWriter]
}

// Bind makes w (usually the *gateway.Gateway) the writer.
func (d *Downlink) Bind(w CommandWriter) { d.w.Store(&w) }

// Write implements CommandWriter.
func (d *Downlink) Write(ctx context.Context, connector string, m *gateway.Message) error {
	p := d.w.Load()
	if p == nil {
		return fmt.Errorf("mqtt: downlink not bound to a gateway: %w", gateway.ErrNoRoute)
	}
	return (*p).Write(ctx, connector, m)
}
