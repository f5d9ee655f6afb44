package gateway

// Reconfigurer is an optional capability of a DeviceConnector: it can take
// a changed configuration while it runs, keeping its device sessions.
//
// When a reload (Reload, ApplyConfig, a watched configuration file)
// changes a configured connector's section, the gateway builds the new
// connector with the kind's factory as always and, if the running one is a
// Reconfigurer, offers it the new one first. Reconfigure returns true when
// it took the new settings over in place; the gateway then keeps the
// running connector, drops next (which was never connected) and records the
// new configuration as current. It returns false when a change needs a
// restart (for example a new listen address); the gateway then disconnects
// the running connector and connects next, as it does for connectors
// without this capability.
//
// Reconfigure is called with the gateway's configuration lock held, while
// the connector may be connected, connecting or not started yet, and
// concurrently with its own device traffic: it must swap what it changes
// atomically and return promptly, without waiting for devices. What a
// connected device keeps or loses across the change (a removed credential,
// a narrower ACL) is the connector's to decide and document. Connectors
// given as options (WithConnector) are never reconfigured.
type Reconfigurer interface {
	Reconfigure(next DeviceConnector) bool
}

// reconfigureInPlace offers the connector of a changed section to the
// running configured connector cr and reports whether cr took it over.
// Called with g.mu held.
func (g *Gateway) reconfigureInPlace(cr *connRun, nc namedConnector) bool {
	r, ok := cr.nc.conn.(Reconfigurer)
	if !ok || nc.conn == nil || cr.nc.hash == "" || nc.hash == "" {
		return false
	}
	if !r.Reconfigure(nc.conn) {
		return false
	}
	cr.nc.hash = nc.hash
	g.log.Info("connector reconfigured in place", "connector", nc.name)
	return true
}
