package gateway

import (
	"context"
	"fmt"
)

// Write sends a command to a device: m is encoded with the codec of the
// named connector and written through the connector's Downlinker. m.Device
// and m.Topic address the device and, for the connector, the resource or
// register block. Errors wrap ErrNoRoute for an unknown or stopped
// connector and ErrNotSupported when the connector or codec cannot write.
func (g *Gateway) Write(ctx context.Context, connector string, m *Message) error {
	g.mu.Lock()
	cr := g.connectors[connector]
	g.mu.Unlock()
	if cr == nil {
		return fmt.Errorf("gateway: write to %s/%s: connector %q: %w", connector, m.Device, connector, ErrNoRoute)
	}
	dl, ok := cr.nc.conn.(Downlinker)
	if !ok {
		return fmt.Errorf("gateway: write to %s/%s: connector cannot write to devices: %w", connector, m.Device, ErrNotSupported)
	}
	if !cr.up.Load() {
		return fmt.Errorf("gateway: write to %s/%s: connector not connected: %w", connector, m.Device, ErrNoRoute)
	}
	nc := cr.bind.codec.Load()
	f := AcquireFrame()
	defer f.Release()
	f.Device, f.Topic, f.Connector, f.ID = m.Device, m.Topic, connector, m.ID
	var err error
	f.Payload, err = nc.codec.Encode(m, f.Payload)
	if err != nil {
		return fmt.Errorf("gateway: write to %s/%s: codec %s: %w", connector, m.Device, nc.name, err)
	}
	if err := dl.Write(ctx, f); err != nil {
		return fmt.Errorf("gateway: write to %s/%s: %w", connector, m.Device, err)
	}
	return nil
}
