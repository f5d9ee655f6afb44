package mqtt

import (
	"context"
	"fmt"
	"github.com/iotgw/gateway/internal/testenv"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// pubLines publishes one QoS 1 message per line with a single
// mosquitto_pub, which keeps up to 20 in flight.
func pubLines(t *testing.T, port int, topic string, lines []string) {
	t.Helper()
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-q", "1", "-t", topic, "-l"}
	if out, err := mosqStdin(t, strings.Join(lines, "\n")+"\n", "mosquitto_pub", args...); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
}

// TestClientPipelinesDeliveries: while the gateway has not accepted the
// first message, the client goes on reading and hands over the next ones
// (its window), which are then delivered together, in order, and each is
// acknowledged: none comes back after a reconnect.
func TestClientPipelinesDeliveries(t *testing.T) {
	b := startBroker(t)
	up := conntest.NewBatchCollector()
	release := up.Hold()
	defer release()
	c := startClient(t, up, WithBroker("tcp://"+b.addr()), WithSession("gw-pipe", false), WithTopics(1, "sensors/{device}/#"))
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprint(i))
	}
	pubLines(t, b.port, "sensors/a/x", lines)
	conntest.Eventually(t, 10*time.Second, "all ten handed over while the first waits", func() bool {
		c.mu.Lock()
		p := c.pipe
		c.mu.Unlock()
		return p != nil && p.InFlight() == 10
	})
	release()
	fs := up.WaitFor(t, 5*time.Second, "ten frames", func(fs []gateway.Frame) bool { return len(fs) == 10 })
	for i, f := range fs {
		if string(f.Payload) != lines[i] {
			t.Fatalf("frame %d is %q: out of order", i, f.Payload)
		}
	}
	// The first batch was held; all the others were queued by then and
	// go in the next one.
	if bs := up.Batches(); len(bs) > 2 {
		t.Fatalf("batches %v: the messages read while the first batch waited were not delivered together", bs)
	}
	// Every message was acknowledged: a new session of the same client id
	// gets nothing again.
	conntest.Eventually(t, 5*time.Second, "completions", func() bool { return c.Stats().Total.Frames == 10 })
	ctxDisconnect(t, c)
	up2 := conntest.NewCollector()
	startClient(t, up2, WithBroker("tcp://"+b.addr()), WithSession("gw-pipe", false), WithTopics(1, "sensors/{device}/#"))
	pub(t, b, "sensors/a/x", "after")
	fs = up2.WaitFor(t, 5*time.Second, "the next message", func(fs []gateway.Frame) bool { return len(fs) >= 1 })
	if len(fs) != 1 || string(fs[0].Payload) != "after" {
		t.Fatalf("after the reconnect: %d frames, first %q; want only \"after\" (redelivered = not acknowledged)", len(fs), fs[0].Payload)
	}
}

// mosqStdin runs a mosquitto tool with stdin.
func mosqStdin(t *testing.T, stdin, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.RequireCommand(t, tool), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func ctxDisconnect(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}
