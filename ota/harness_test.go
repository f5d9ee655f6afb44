package ota

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/upstream/mqtt"
)

// The integration tests run real gateways (edge mode, SQLite store) with a
// TCP line connector whose devices get "ok <id>" once a frame is accepted,
// and the upstream MQTT sink publishing to a real mosquitto that needs a
// password. Generations differ by the upstream topic (ota/<gen>/...), so
// the consumer sees which generation serves.

const (
	brokerUser = "gw"
	brokerPass = "s3cret"
)

type broker struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startBroker starts mosquitto on loopback with a password file.
func startBroker(t testing.TB) *broker {
	t.Helper()
	bin := testenv.RequireCommand(t, "mosquitto", "mosquitto_passwd")
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pw, brokerUser, brokerPass).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	if out, err := exec.Command("mosquitto_passwd", "-b", pw, "consumer", "c0nsumer").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence true\npersistence_location %s/\nmax_queued_messages 10000000\nmax_inflight_messages 0\nlog_dest none\n", port, pw, dir)
	if os.Geteuid() == 0 {
		body += "user root\n"
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &broker{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: exec.Command(bin, "-c", conf), done: make(chan struct{})}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { _ = b.cmd.Process.Kill(); <-b.done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tagOf names a generation's messages: its tag at the gateway's port.
func tagOf(tag string, port int) string { return fmt.Sprintf("%s@%d", tag, port) }

// genConfig is the gateway YAML of a generation: tag names the upstream
// topic level, password the broker password, codec the connector's codec.
func genConfig(port int, brokerAddr, tag, password, codecKind string) string {
	return fmt.Sprintf(`codecs:
  - name: payload
    %s: {}
connectors:
  - name: dev
    codec: payload
    line: {address: "127.0.0.1:%d"}
sinks:
  - name: up
    mqtt:
      broker: tcp://%s
      username: %s
      password: %s
      client_id: gw-%d
      topic: ota/%s/%d/{device}
      reconnect_max: 200ms
      connect_timeout: 1s
      publish_timeout: 2s
`, codecKind, port, brokerAddr, brokerUser, password, port, tag, port)
}

// testRegistry has the line connector, the reference codecs and the
// upstream MQTT sink.
func testRegistry(t testing.TB) *gateway.Registry {
	reg := gateway.NewRegistry()
	if err := codec.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := mqtt.Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	// "broken" decodes nothing: a codec update that makes decode errors jump.
	if err := reg.AddCodec("broken", func(name string, spec gateway.Section) (gateway.Codec, error) {
		return gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
			return fmt.Errorf("broken codec: cannot decode %d bytes", len(f.Payload))
		}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddConnector("line", func(name string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var c struct {
			Address string `yaml:"address"`
		}
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		return &lineConnector{addr: c.Address}, nil
	}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// lineConnector accepts "<id hex> <payload>" lines and answers "ok <id>"
// once the gateway accepted the frame (in edge mode: in the Store).
type lineConnector struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
}

func (c *lineConnector) Connect(ctx context.Context, up gateway.Uplink) error {
	var err error
	for i := 0; i < 50; i++ { // the previous owner of the port may still be closing
		if c.ln, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	c.conn = map[net.Conn]struct{}{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conn[conn] = struct{}{}
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.serve(conn, up)
			}()
		}
	}()
	return nil
}

func (c *lineConnector) serve(conn net.Conn, up gateway.Uplink) {
	defer conn.Close()
	sc := bufio.NewScanner(conn)
	w := bufio.NewWriter(conn)
	for sc.Scan() {
		idHex, payload, _ := strings.Cut(sc.Text(), " ")
		id, err := gateway.ParseMessageID(idHex)
		if err != nil {
			return
		}
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.ID = "dev", "data", id
		f.Payload = append(f.Payload, payload...)
		if err := up.Deliver(context.Background(), f); err != nil {
			fmt.Fprintf(w, "err %s\n", idHex)
		} else {
			fmt.Fprintf(w, "ok %s\n", idHex)
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (c *lineConnector) Disconnect(ctx context.Context) error {
	if c.ln != nil {
		c.ln.Close()
	}
	c.mu.Lock()
	for conn := range c.conn {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

func idOf(n uint64) gateway.MessageID {
	var id gateway.MessageID
	id[0] = 0x07
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func numOf(id gateway.MessageID) uint64 { return binary.BigEndian.Uint64(id[8:]) }

// devices send numbered JSON readings and remember what was acknowledged.
type devices struct {
	next     atomic.Uint64
	sessions atomic.Int64 // connections made
	mu       sync.Mutex
	acked    map[uint64]bool
}

func newDevices() *devices { return &devices{acked: map[uint64]bool{}} }

// run sends over one connection to addr, reconnecting, until stop closes.
func (d *devices) run(addr string, every time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		d.sessions.Add(1)
		d.session(c, every, stop)
		c.Close()
	}
}

func (d *devices) session(c net.Conn, every time.Duration, stop <-chan struct{}) {
	r := bufio.NewReader(c)
	for {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		n := d.next.Add(1)
		id := idOf(n)
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "%s {\"t\":%d}\n", id, n%100); err != nil {
			return
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "ok ") {
			d.mu.Lock()
			d.acked[n] = true
			d.mu.Unlock()
		}
	}
}

func (d *devices) ackedSet() map[uint64]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[uint64]bool, len(d.acked))
	for k := range d.acked {
		out[k] = true
	}
	return out
}

// consumer subscribes to ota/# and records each message's number, topic
// and arrival time.
type consumer struct {
	c     paho.Client
	mu    sync.Mutex
	got   map[uint64]string // number -> generation tag of the first copy
	last  map[string]time.Time
	times map[string][]time.Time // arrivals per tag
}

func newConsumer(t testing.TB, addr string) *consumer {
	t.Helper()
	cs := &consumer{got: map[uint64]string{}, last: map[string]time.Time{}, times: map[string][]time.Time{}}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("consumer-%d", time.Now().UnixNano())).
		SetUsername("consumer").SetPassword("c0nsumer").SetCleanSession(true).SetAutoReconnect(true).SetOrderMatters(false)
	ready := make(chan struct{}, 1)
	opts.SetOnConnectHandler(func(c paho.Client) {
		tok := c.Subscribe("ota/#", 1, cs.handle)
		tok.Wait()
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	cs.c = paho.NewClient(opts)
	if tok := cs.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("consumer connect: %v", tok.Error())
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("consumer not subscribed")
	}
	t.Cleanup(func() { cs.c.Disconnect(50) })
	return cs
}

func (cs *consumer) handle(_ paho.Client, m paho.Message) {
	var env struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(m.Payload(), &env) != nil {
		return
	}
	id, err := gateway.ParseMessageID(env.ID)
	if err != nil {
		return
	}
	parts := strings.Split(m.Topic(), "/")
	if len(parts) < 3 {
		return
	}
	tag := parts[1] + "@" + parts[2]
	now := time.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.got[numOf(id)]; !ok {
		cs.got[numOf(id)] = tag
	}
	cs.last[tag] = now
	cs.times[tag] = append(cs.times[tag], now)
}

// missing returns the acknowledged numbers not received.
func (cs *consumer) missing(acked map[uint64]bool) []uint64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []uint64
	for n := range acked {
		if _, ok := cs.got[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func (cs *consumer) lastOf(tag string) time.Time {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.last[tag]
}

// firstOf returns the first arrival of tag after t.
func (cs *consumer) firstOf(tag string, t time.Time) time.Time {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, at := range cs.times[tag] {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}
