package mqtt

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway/internal/testenv"
)

// mosquitto is a real broker on a loopback port, with persistence so its
// sessions and queued messages survive a restart.
type mosquitto struct {
	t    testing.TB
	dir  string
	port int
	conf string
	cmd  *exec.Cmd
	done chan error
}

type brokerTLS struct{ ca, cert, key string }

func startMosquitto(t testing.TB, tlsFiles *brokerTLS) *mosquitto {
	t.Helper()
	bin := testenv.RequireCommand(t, "mosquitto")
	b := &mosquitto{t: t, dir: t.TempDir(), port: testenv.FreePort(t)}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 0
max_inflight_messages 0
log_dest file %s
log_type error
log_type warning
log_type notice
`, b.port, b.dir, filepath.Join(b.dir, "mosquitto.log"))
	if tlsFiles != nil {
		conf += fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", tlsFiles.ca, tlsFiles.cert, tlsFiles.key)
	}
	if os.Geteuid() == 0 {
		conf += "user root\n" // keep access to the test's own temp dir
	}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start(bin)
	t.Cleanup(b.stop)
	return b
}

func (b *mosquitto) start(bin string) {
	b.t.Helper()
	cmd := exec.Command(bin, "-c", b.conf)
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.cmd, b.done = cmd, make(chan error, 1)
	go func(done chan<- error) { done <- cmd.Wait() }(b.done) // ends when the broker exits; stop waits for it
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-b.done:
			log, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
			b.t.Fatalf("mosquitto exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %s", b.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *mosquitto) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }
func (b *mosquitto) url() string  { return "tcp://" + b.addr() }

// stop ends the broker with SIGTERM, which saves its persistence file.
func (b *mosquitto) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// consumer is the cloud side: a persistent-session paho subscriber that
// counts each message id once.
type consumer struct {
	mu     sync.Mutex
	ids    map[string]int
	topics map[string]string
	last   map[string]json.RawMessage
	order  map[string][]string // device -> ids in order of first arrival
	qos    map[string]byte     // id -> QoS the broker delivered it with
	c      paho.Client
}

type envelope struct {
	ID          string `json:"id"`
	Device      string `json:"device"`
	Topic       string `json:"topic"`
	QoS         int    `json:"qos"`
	TraceParent string `json:"traceparent"`
}

func newConsumer(t *testing.T, brokerURL, clientID, filter string) *consumer {
	return newConsumerQoS(t, brokerURL, clientID, filter, 1)
}

func newConsumerQoS(t *testing.T, brokerURL, clientID, filter string, subQoS byte) *consumer {
	t.Helper()
	c := &consumer{ids: map[string]int{}, topics: map[string]string{}, last: map[string]json.RawMessage{}, order: map[string][]string{}, qos: map[string]byte{}}
	handler := func(_ paho.Client, m paho.Message) {
		var e envelope
		if err := json.Unmarshal(m.Payload(), &e); err != nil {
			t.Errorf("consumer: bad envelope on %s: %v: %s", m.Topic(), err, m.Payload())
			return
		}
		c.mu.Lock()
		if c.ids[e.ID] == 0 {
			c.order[e.Device] = append(c.order[e.Device], e.ID)
		}
		c.ids[e.ID]++
		c.qos[e.ID] = m.Qos()
		c.topics[e.ID] = m.Topic()
		c.last[e.ID] = append(json.RawMessage(nil), m.Payload()...)
		c.mu.Unlock()
	}
	o := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(cl paho.Client) { cl.Subscribe(filter, subQoS, handler) })
	c.c = paho.NewClient(o)
	if tok := c.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("consumer connect: %v", tok.Error())
	}
	// Make sure the subscription is in place before anything is published.
	if tok := c.c.Subscribe(filter, subQoS, handler); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("consumer subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.c.Disconnect(100) })
	return c
}

func (c *consumer) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func (c *consumer) waitUnique(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.unique() < n {
		if time.Now().After(deadline) {
			t.Fatalf("consumer has %d unique messages, want %d", c.unique(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func binPath(t testing.TB) string { return testenv.RequireCommand(t, "mosquitto") }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
