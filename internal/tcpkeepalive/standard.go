package tcpkeepalive

// Standard reports whether s has the keepalive every device connection
// should: on, Period idle and between probes, Count probes.
func (s Socket) Standard() bool {
	return s.Enabled && s.Idle == Period && s.Interval == Period && s.Count == Count
}
