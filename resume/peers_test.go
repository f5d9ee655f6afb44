package resume

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// mosquitto is a broker process the test owns, on a loopback port.
type mosquitto struct {
	t    testing.TB
	bin  string
	conf string
	addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startMosquitto(t testing.TB) *mosquitto { return startMosquittoOn(t, "127.0.0.1") }

// startMosquittoOn starts a broker listening on host (an address the test
// owns: loopback or a veth it created).
func startMosquittoOn(t testing.TB, host string) *mosquitto {
	t.Helper()
	bin := testenv.RequireCommand(t, "mosquitto")
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d %s\nallow_anonymous true\npersistence true\npersistence_location %s/\n"+
		"max_queued_messages 10000000\nmax_inflight_messages 0\nlog_dest none\n", port, host, dir)
	if os.Geteuid() == 0 {
		// Run as root, mosquitto switches to its own user, which cannot
		// write persistence into the test's private directory.
		body += "user root\n"
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{t: t, bin: bin, conf: conf, addr: net.JoinHostPort(host, fmt.Sprint(port))}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.bin, "-c", m.conf)
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto not ready on %s: %v", m.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop terminates the broker (it saves its persistence) and waits.
func (m *mosquitto) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// pahoSink publishes each message's ID (hex) at QoS 1 and returns after
// every PUBACK. While the file off exists it fails every Publish: a switch
// the tests use to build a backlog.
type pahoSink struct {
	broker, clientID, topic, off string
	mu                           sync.Mutex
	c                            mqtt.Client
}

var (
	_ gateway.Sink    = (*pahoSink)(nil)
	_ gateway.Starter = (*pahoSink)(nil)
)

func (p *pahoSink) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connectLocked()
}

func (p *pahoSink) connectLocked() error {
	if p.c != nil && p.c.IsConnectionOpen() {
		return nil
	}
	if p.c != nil {
		p.c.Disconnect(0)
	}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + p.broker).SetClientID(p.clientID).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(time.Second).
		SetWriteTimeout(2 * time.Second).SetMaxResumePubInFlight(0)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("paho connect %s: %v", p.broker, tok.Error())
	}
	p.c = c
	return nil
}

func (p *pahoSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	if p.off != "" {
		if _, err := os.Stat(p.off); err == nil {
			return errors.New("sink switched off")
		}
	}
	p.mu.Lock()
	if err := p.connectLocked(); err != nil {
		p.mu.Unlock()
		return err
	}
	c := p.c
	p.mu.Unlock()
	toks := make([]mqtt.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = c.Publish(p.topic, 1, false, m.ID.String())
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for _, tok := range toks {
		select {
		case <-tok.Done():
		case <-ctx.Done():
			c.Disconnect(0)
			return fmt.Errorf("paho publish: %w", ctx.Err())
		case <-timeout.C:
			c.Disconnect(0)
			return errors.New("paho publish: no PUBACK within 5s")
		}
		if tok.Error() != nil {
			c.Disconnect(0)
			return fmt.Errorf("paho publish: %v", tok.Error())
		}
	}
	return nil
}

// Redial implements Redialer.
func (p *pahoSink) Redial() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		p.c.Disconnect(0)
		p.c = nil
	}
}

var _ Redialer = (*pahoSink)(nil)

func (p *pahoSink) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		p.c.Disconnect(100)
	}
	return nil
}

// consumer is the application behind the broker: a persistent QoS 1
// subscription that records every ID it receives.
type consumer struct {
	mu       sync.Mutex
	received map[gateway.MessageID]int
	total    int
	dedup    *Deduper
	c        mqtt.Client
}

func newConsumer(t testing.TB, broker, topic string) *consumer {
	t.Helper()
	cs := &consumer{received: map[gateway.MessageID]int{}, dedup: NewDeduper(1 << 20)}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("consumer-" + topic).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOrderMatters(false)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(topic, 1, cs.handle)
	})
	// paho reads each packet header a byte at a time from the socket; a
	// read buffer makes that one system call per buffer-full of PUBLISHes,
	// as a consumer built for throughput would.
	opts.SetCustomOpenConnectionFn(func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", uri.Host, 5*time.Second)
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
	})
	cs.c = mqtt.NewClient(opts)
	if tok := cs.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("consumer connect: %v", tok.Error())
	}
	time.Sleep(100 * time.Millisecond) // the subscription is in place
	t.Cleanup(func() { cs.c.Disconnect(100) })
	return cs
}

func (cs *consumer) handle(_ mqtt.Client, m mqtt.Message) {
	p := m.Payload()
	if len(p) > 0 && p[0] == '{' { // the gateway's JSON envelope: {"id":"<32 hex>",...
		const pre = `{"id":"`
		if len(p) < len(pre)+32 || string(p[:len(pre)]) != pre {
			return
		}
		p = p[len(pre) : len(pre)+32]
	}
	id, err := gateway.ParseMessageID(string(p))
	if err != nil {
		return
	}
	cs.mu.Lock()
	cs.received[id]++
	cs.total++
	cs.mu.Unlock()
	cs.dedup.First(id)
}

func (cs *consumer) has(id gateway.MessageID) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.received[id] > 0
}

func (cs *consumer) snapshot() (distinct, total int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.received), cs.total
}

// lineConnector is a device endpoint on TCP: each line "<hex id> <payload>"
// is delivered, and "ok <hex id>" written back only when Deliver returned
// nil (the device acknowledgement).
type lineConnector struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
}

func (c *lineConnector) Connect(ctx context.Context, up gateway.Uplink) error {
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
	c.ln.Close()
	c.mu.Lock()
	for conn := range c.conn {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// idOf is the MessageID a test device gives its n-th message.
func idOf(n uint64) gateway.MessageID {
	var id gateway.MessageID
	id[0] = 0xd1
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
