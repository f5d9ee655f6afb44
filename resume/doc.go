// Package resume is store-and-forward for the gateway: a durable queue, a
// recovery state machine, link probes and a retry scheduler.
//
// The happy path, edge mode on the SQLite store:
//
//	st, _ := resume.NewSQLiteStore(resume.SQLiteConfig{Path: "/var/lib/gw/queue.db"})
//	g, _ := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithSink("cloud", sink))
//	_ = g.Run(ctx) // a device's frame is committed before Deliver returns; replayed after a crash
//
// With the recovery machinery in charge of the backlog, use an EdgeStore:
// the gateway then runs its Drainer, and with probes its Monitor and
// Machine, for the live path as well as the backlog (see gateway.Drainer):
//
//	st, _ := resume.NewEdgeStore(resume.EdgeConfig{
//		Store:   resume.SQLiteConfig{Path: "/var/lib/gw/queue.db"},
//		Monitor: resume.MonitorConfig{Probes: []resume.Probe{&resume.ICMPProbe{Host: "198.51.100.7"},
//			&resume.HTTPHeadProbe{URL: "https://cloud.example/health"}, &resume.HeartbeatProbe{Addr: "cloud.example:9999"}}},
//	})
//	g, _ := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithSink("cloud", sink))
//
// Or from YAML: call Register(reg) and write `store: {sqlite: {path: ...}}`;
// a `drain:` block (with `probes:`) in that section builds an EdgeStore.
//
// The parts:
//
//   - SQLiteStore (gateway.Store): WAL mode, synchronous=FULL by default,
//     group commit shared by concurrent producers, rows ordered by an
//     INTEGER PRIMARY KEY that encodes priority then arrival (never the
//     clock), MessageID, attempts and next try persisted. Bounded in rows
//     and bytes (reject new, or drop oldest with a counted eviction); a
//     free-space guard (MinFreeBytes, by default 2% of the file system,
//     1 MiB to 16 MiB) and ENOSPC give ErrStoreFull with the figures,
//     never a crash; acks and releases a full disk refused are retried
//     with backoff, so the backlog drains when space returns, without a
//     restart; a corrupt file is moved aside, not deleted. A dead_letter
//     table keeps frames their codec could not decode, raw with their
//     connector, device, topic, codec and error (gateway.DeadLetterStore:
//     the gateway lists, replays and deletes them).
//   - Machine: Online, Degraded, Offline, Recovering, Draining with
//     guarded transitions and entry/exit actions.
//   - Monitor with ICMPProbe, HTTPHeadProbe and HeartbeatProbe (the
//     16-byte UDP heartbeat; HeartbeatResponder is the cloud side): the
//     link is up when a quorum (default 2 of 3) agrees; RTT and jitter
//     are kept per probe.
//   - Drainer: replays per-sink records on a timing wheel (RetryWheel) with
//     full-jitter backoff and a bounded window of batches in flight,
//     paused while Offline and restarted the moment the link returns.
//   - UplinkShare: live traffic and backlog share one sink by ratio.
//   - EdgeStore: a SQLiteStore that is also the gateway's Drainer and
//     LiveWrapper. Inside a gateway, records go to the sink they were
//     stored for and frames left by a crash go back through decode and
//     routing; live publishes take their turns on each sink's UplinkShare,
//     feed the Machine, are cut when it enters Offline and refused while
//     it stays there (the gateway spills them to the store at once).
//   - Deduper: the consumer side of at-least-once delivery, by MessageID.
package resume
