package gateway

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// retuneConnector takes a changed devices count in place; a changed
// address needs a restart.
type retuneConnector struct {
	testConnector
	address  string
	devices  atomic.Int32
	retuned  atomic.Int32
	declined atomic.Int32
}

func (c *retuneConnector) Reconfigure(next DeviceConnector) bool {
	n, ok := next.(*retuneConnector)
	if !ok || n.address != c.address {
		c.declined.Add(1)
		return false
	}
	c.devices.Store(n.devices.Load())
	c.retuned.Add(1)
	return true
}

// TestReloadReconfiguresInPlace: a changed section of a Reconfigurer
// connector is applied to the running connector without a restart, and
// counts as current for the next reload; a change it declines restarts it.
func TestReloadReconfiguresInPlace(t *testing.T) {
	w := newTestWorld(t)
	var built []*retuneConnector
	if err := w.reg.AddConnector("retune", func(name string, spec Section) (DeviceConnector, error) {
		var c testConnCfg
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		rc := &retuneConnector{address: c.Address}
		rc.devices.Store(int32(c.Devices))
		built = append(built, rc)
		return rc, nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg := func(addr string, devices int) *Config {
		t.Helper()
		c, err := ParseConfig([]byte("connectors:\n  - name: r\n    retune: {address: \""+addr+"\", devices: "+strconv.Itoa(devices)+"}\n"), "gw.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	g, err := New(WithRegistry(w.reg), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := g.ApplyConfig(ctx, cfg("127.0.0.1:1", 1)); err != nil {
		t.Fatal(err)
	}
	run(t, g)
	first := built[0]
	waitFor(t, "connector up", 2*time.Second, func() bool { return first.uplink() != nil })

	if err := g.ApplyConfig(ctx, cfg("127.0.0.1:1", 5)); err != nil {
		t.Fatal(err)
	}
	if first.retuned.Load() != 1 || first.devices.Load() != 5 {
		t.Fatalf("not reconfigured in place: retuned=%d devices=%d", first.retuned.Load(), first.devices.Load())
	}
	if first.disconnects.Load() != 0 || first.connects.Load() != 1 {
		t.Fatalf("reconfigured connector restarted: connects=%d disconnects=%d", first.connects.Load(), first.disconnects.Load())
	}
	// The applied section is now current: the same config again builds
	// nothing and offers nothing.
	n := len(built)
	if err := g.ApplyConfig(ctx, cfg("127.0.0.1:1", 5)); err != nil {
		t.Fatal(err)
	}
	if len(built) != n || first.retuned.Load() != 1 {
		t.Fatalf("unchanged section rebuilt (%d -> %d) or re-offered (retuned=%d)", n, len(built), first.retuned.Load())
	}

	// A change the connector declines restarts it as before.
	if err := g.ApplyConfig(ctx, cfg("127.0.0.1:2", 5)); err != nil {
		t.Fatal(err)
	}
	if first.declined.Load() != 1 || first.disconnects.Load() != 1 {
		t.Fatalf("declined change: declined=%d disconnects=%d", first.declined.Load(), first.disconnects.Load())
	}
	last := built[len(built)-1]
	waitFor(t, "replacement up", 2*time.Second, func() bool { return last != first && last.uplink() != nil })
}
