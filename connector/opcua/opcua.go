package opcua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/waitctx"
)

// Errors callers branch on with errors.Is. Write errors that come from a
// server status also match the ua.StatusCode.
var (
	// ErrTypeMismatch is a written value that does not convert to the
	// node's data type (locally, or BadTypeMismatch from the server).
	ErrTypeMismatch = errors.New("opcua: type mismatch")
	// ErrNotWritable is a write to a node that is not writable
	// (BadNotWritable).
	ErrNotWritable = errors.New("opcua: node not writable")
	// ErrAccessDenied is a write the session's user may not make
	// (BadUserAccessDenied).
	ErrAccessDenied = errors.New("opcua: user access denied")
	// ErrNotConnected is a read or write while the session is down.
	ErrNotConnected = errors.New("opcua: server not connected")
	// ErrUnknownNode is a write to a topic that names no configured node.
	ErrUnknownNode = errors.New("opcua: unknown node")
	// ErrAuth is a session the server refused for its user identity:
	// wrong user name or password, or an identity it does not accept.
	ErrAuth = errors.New("opcua: authentication failed")
	// ErrUntrustedServer is a server certificate not in the trust list.
	ErrUntrustedServer = errors.New("opcua: server certificate not trusted")
	// ErrCertRejected is a secure channel the server refused: most often
	// it does not trust the client certificate yet.
	ErrCertRejected = errors.New("opcua: server rejected the secure channel (does it trust the client certificate?)")
	// ErrNoEndpoint is a server with no endpoint for the configured
	// security policy and mode.
	ErrNoEndpoint = errors.New("opcua: no matching endpoint")
)

// Stats are the connector's counters; see Connector.Stats.
type Stats struct {
	connstats.Stats
	// Servers holds the per-server session counters by server name.
	Servers map[string]SessionStats
}

// SessionStats are a server's session and subscription counters.
type SessionStats struct {
	// Sessions counts sessions established; Resubscribes the
	// subscriptions re-created on a new session after a loss.
	Sessions, Resubscribes uint64
	// Gaps counts items whose data may have missed changes: the first
	// value after a re-created subscription differs from the last one
	// delivered, or the server flagged a queue overflow.
	Gaps uint64
	// Duplicates counts notifications dropped because they repeated the
	// last value delivered (same value, status and source timestamp), as
	// a re-created subscription's first notification does.
	Duplicates uint64
	// ReadRequests counts ReadRequests sent for polling, PollCycles the
	// poll cycles completed.
	ReadRequests, PollCycles uint64
	// Notifications counts data change notifications received.
	Notifications uint64
}

// Connector reads OPC UA servers and writes to their nodes. Each server
// has its own session and goroutine.
type Connector struct {
	s     settings
	stats connstats.Table
	lim   *lograte.Limiter

	mu      sync.Mutex
	servers map[string]*serverRun
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var (
	_ gateway.DeviceConnector = (*Connector)(nil)
	_ gateway.Downlinker      = (*Connector)(nil)
	_ gateway.StatsReporter   = (*Connector)(nil)
)

type serverRun struct {
	c      *Connector
	srv    Server
	stats  *connstats.Counters
	byName map[string]int
	parsed []*ua.NodeID // from Node.ID; nil for browse paths
	paths  [][]*ua.QualifiedName
	trust  *trustList

	mu     sync.Mutex
	client *opcua.Client
	ids    []*ua.NodeID      // resolved this session; nil when unresolved
	types  map[int]ua.TypeID // data types for writes, this session

	// Owned by the run goroutine.
	last     []lastValue
	key      []byte
	resumed  []bool
	sessions int

	sessionsN, resubs, gaps, dups, reads, cycles, notifs atomic.Uint64
}

type lastValue struct {
	have    bool
	status  ua.StatusCode
	src     time.Time
	payload []byte // the value's payload without timestamps
}

// New builds a connector. It connects to nothing until Connect.
func New(opts ...Option) (*Connector, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("opcua: %w", err)
		}
	}
	c := &Connector{s: s, servers: map[string]*serverRun{}, lim: lograte.New(time.Minute)}
	for _, srv := range s.servers {
		r := &serverRun{c: c, srv: srv, stats: c.stats.Device(srv.Name), byName: map[string]int{},
			parsed: make([]*ua.NodeID, len(srv.Nodes)), paths: make([][]*ua.QualifiedName, len(srv.Nodes)),
			last: make([]lastValue, len(srv.Nodes)), resumed: make([]bool, len(srv.Nodes))}
		for i, n := range srv.Nodes {
			r.byName[n.Name] = i
			if n.ID != "" {
				r.parsed[i], _ = ParseNodeID(n.ID)
			} else {
				r.paths[i], _ = ParseBrowsePath(n.Path)
			}
		}
		if srv.SecurityPolicy != PolicyNone {
			tl, err := loadTrustList(srv.TrustedCerts)
			if err != nil {
				return nil, fmt.Errorf("opcua: server %s: %w", srv.Name, err)
			}
			r.trust = tl
		}
		c.servers[srv.Name] = r
	}
	return c, nil
}

// Stats returns the counters: frames, errors, reconnects and request
// latency per server (connstats), and the session counters.
func (c *Connector) Stats() Stats {
	st := Stats{Stats: c.stats.Stats(), Servers: map[string]SessionStats{}}
	for name, r := range c.servers {
		st.Servers[name] = SessionStats{Sessions: r.sessionsN.Load(), Resubscribes: r.resubs.Load(), Gaps: r.gaps.Load(),
			Duplicates: r.dups.Load(), ReadRequests: r.reads.Load(), PollCycles: r.cycles.Load(), Notifications: r.notifs.Load()}
	}
	return st
}

// StatsReport implements gateway.StatsReporter (see connstats.Report).
func (c *Connector) StatsReport(maxDevices int) any { return c.stats.Report(maxDevices) }

// Connect starts one session keeper per server. Unreachable servers do
// not fail Connect: they are retried with backoff.
func (c *Connector) Connect(_ context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("opcua: already connected")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, r := range c.servers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			r.run(ctx, up)
		}()
	}
	return nil
}

// Disconnect closes the sessions and waits for the keepers.
func (c *Connector) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	if err := waitctx.Wait(ctx, &c.wg); err != nil {
		return fmt.Errorf("opcua: disconnect: %w", err)
	}
	return nil
}

func (r *serverRun) log() *slog.Logger { return r.c.s.logger }

// run keeps a session to the server until ctx ends: connect, resolve the
// nodes, subscribe or poll; on any loss close everything and start over
// after a backoff delay.
func (r *serverRun) run(ctx context.Context, up gateway.Uplink) {
	s := r.c.s
	bo := backoff.Backoff{Min: s.backoffMin, Max: s.backoffMax, Stable: 10 * time.Second, ResetAfter: 1}
	for ctx.Err() == nil {
		cl, states, err := r.connect(ctx)
		what := "opcua server unreachable; retrying"
		if err == nil {
			bo.Up()
			bo.Success()
			if r.sessions > 0 {
				r.stats.Reconnect()
				r.c.stats.Total.Reconnect()
			}
			r.sessions++
			r.sessionsN.Add(1)
			err = r.session(ctx, cl, states, up)
			r.setClient(nil)
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = cl.Close(cctx)
			cancel()
			for i := range r.resumed {
				r.resumed[i] = true
			}
			what = "opcua session lost; reconnecting"
		}
		if ctx.Err() != nil {
			return
		}
		r.stats.Error()
		r.c.stats.Total.Error()
		wait := bo.Next()
		r.c.lim.Log(ctx, r.log(), slog.LevelWarn, what+":"+r.srv.Name, what, "server", r.srv.Name,
			"endpoint", r.srv.Endpoint, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// connect discovers the endpoints, picks the configured one, checks the
// server certificate and opens a session.
func (r *serverRun) connect(ctx context.Context) (*opcua.Client, chan opcua.ConnState, error) {
	s, srv := r.c.s, r.srv
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	eps, err := opcua.GetEndpoints(dctx, srv.Endpoint, opcua.DialTimeout(s.timeout), opcua.RequestTimeout(s.timeout))
	if err != nil {
		return nil, nil, fmt.Errorf("opcua %s: get endpoints from %s: %w", srv.Name, srv.Endpoint, err)
	}
	ep, err := opcua.SelectEndpoint(eps, srv.SecurityPolicy, srv.mode())
	if err != nil {
		return nil, nil, fmt.Errorf("opcua %s: %w: policy %s, mode %s (%v)", srv.Name, ErrNoEndpoint, srv.SecurityPolicy, srv.SecurityMode, err)
	}
	opts := []opcua.Option{
		opcua.SecurityPolicy(srv.SecurityPolicy), opcua.SecurityMode(srv.mode()),
		opcua.AutoReconnect(false), opcua.RequestTimeout(s.timeout), opcua.DialTimeout(s.timeout),
		opcua.SessionTimeout(max(30*time.Second, 4*s.keepAlive)),
		opcua.ApplicationName("iotgw gateway"),
	}
	if r.trust != nil {
		if err := r.trust.check(ep.ServerCertificate); err != nil {
			return nil, nil, fmt.Errorf("opcua %s: %w", srv.Name, err)
		}
		cert, key, err := loadOrCreateCert(srv.CertFile, srv.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("opcua %s: %w", srv.Name, err)
		}
		opts = append(opts, opcua.Certificate(cert), opcua.PrivateKey(key))
	}
	auth := ua.UserTokenTypeAnonymous
	if srv.Username != "" {
		auth = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(srv.Username, srv.Password))
	} else {
		opts = append(opts, opcua.AuthAnonymous())
	}
	if !offers(ep, auth) {
		return nil, nil, fmt.Errorf("opcua %s: %w: the endpoint does not offer %s authentication", srv.Name, ErrAuth, auth)
	}
	opts = append(opts, opcua.SecurityFromEndpoint(ep, auth))
	states := make(chan opcua.ConnState, 8)
	opts = append(opts, opcua.StateChangedCh(states))
	cl, err := opcua.NewClient(srv.Endpoint, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua %s: %w", srv.Name, err)
	}
	cctx, cancel2 := context.WithTimeout(ctx, 2*s.timeout)
	defer cancel2()
	if err := cl.Connect(cctx); err != nil {
		_ = cl.Close(context.Background())
		return nil, nil, fmt.Errorf("opcua %s: connect %s: %w", srv.Name, srv.Endpoint, classifyConnect(err, srv))
	}
	return cl, states, nil
}

func offers(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	for _, p := range ep.UserIdentityTokens {
		if p.TokenType == t {
			return true
		}
	}
	return false
}

// classifyConnect wraps a connect error in the sentinel that says what to
// fix.
func classifyConnect(err error, srv Server) error {
	switch {
	case errors.Is(err, ua.StatusBadUserAccessDenied), errors.Is(err, ua.StatusBadIdentityTokenInvalid),
		errors.Is(err, ua.StatusBadIdentityTokenRejected), errors.Is(err, ua.StatusBadUserSignatureInvalid):
		who := "anonymous"
		if srv.Username != "" {
			who = "user " + strconv.Quote(srv.Username) + " (wrong user name or password?)"
		}
		return fmt.Errorf("%w: %s: %w", ErrAuth, who, err)
	case errors.Is(err, ua.StatusBadSecurityChecksFailed), errors.Is(err, ua.StatusBadCertificateUntrusted),
		errors.Is(err, ua.StatusBadCertificateInvalid), errors.Is(err, ua.StatusBadCertificateURIInvalid):
		return fmt.Errorf("%w: client certificate %s: %w", ErrCertRejected, srv.CertFile, err)
	case srv.SecurityPolicy != PolicyNone && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
		return fmt.Errorf("%w: the server closed the connection while opening the secure channel; client certificate %s: %w", ErrCertRejected, srv.CertFile, err)
	}
	return err
}

func (r *serverRun) setClient(cl *opcua.Client) {
	r.mu.Lock()
	r.client = cl
	if cl == nil {
		r.ids, r.types = nil, nil
	}
	r.mu.Unlock()
}

// resolve gives every node its NodeId: parsed ones as they are, browse
// paths through one TranslateBrowsePathsToNodeIds request. A path that
// does not resolve leaves its node out of this session (logged).
func (r *serverRun) resolve(ctx context.Context, cl *opcua.Client) ([]*ua.NodeID, error) {
	ids := append([]*ua.NodeID(nil), r.parsed...)
	var req ua.TranslateBrowsePathsToNodeIDsRequest
	var which []int
	for i, p := range r.paths {
		if p != nil {
			req.BrowsePaths = append(req.BrowsePaths, browsePath(p))
			which = append(which, i)
		}
	}
	if len(which) == 0 {
		return ids, nil
	}
	var res *ua.TranslateBrowsePathsToNodeIDsResponse
	err := cl.Send(ctx, &req, func(v ua.Response) error {
		rr, ok := v.(*ua.TranslateBrowsePathsToNodeIDsResponse)
		if !ok {
			return fmt.Errorf("unexpected %T", v)
		}
		res = rr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opcua %s: translate browse paths: %w", r.srv.Name, err)
	}
	for k, i := range which {
		if k >= len(res.Results) || res.Results[k].StatusCode != ua.StatusOK || len(res.Results[k].Targets) == 0 {
			st := ua.StatusBadNoMatch
			if k < len(res.Results) {
				st = res.Results[k].StatusCode
			}
			r.stats.Error()
			r.c.lim.Log(ctx, r.log(), slog.LevelWarn, "path:"+r.srv.Name+":"+r.srv.Nodes[i].Name,
				"opcua browse path does not resolve; node skipped", "server", r.srv.Name, "node", r.srv.Nodes[i].Name,
				"path", r.srv.Nodes[i].Path, "status", st)
			continue
		}
		ids[i] = res.Results[k].Targets[0].TargetID.NodeID
	}
	return ids, nil
}

// session serves one session until it is lost (error) or ctx ends (nil).
func (r *serverRun) session(ctx context.Context, cl *opcua.Client, states <-chan opcua.ConnState, up gateway.Uplink) error {
	s := r.c.s
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	ids, err := r.resolve(rctx, cl)
	cancel()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.client, r.ids, r.types = cl, ids, map[int]ua.TypeID{}
	r.mu.Unlock()

	var notifs chan *opcua.PublishNotificationData
	var subID uint32
	var poll <-chan time.Time
	perRead := 0
	if r.srv.Mode == Poll {
		perRead, err = r.maxPerRead(ctx, cl)
		if err != nil {
			return err
		}
		t := time.NewTicker(r.srv.Interval)
		defer t.Stop()
		poll = t.C
		if err := r.pollOnce(ctx, cl, ids, perRead, up); err != nil {
			return err
		}
	} else {
		notifs = make(chan *opcua.PublishNotificationData, 64)
		sub, err := r.subscribe(ctx, cl, ids, notifs)
		if err != nil {
			return err
		}
		subID = sub.SubscriptionID
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_ = sub.Cancel(cctx)
			cancel()
		}()
		if r.sessions > 1 {
			r.resubs.Add(1)
		}
	}
	keep := time.NewTicker(s.keepAlive)
	defer keep.Stop()
	alive := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-states:
			if st == opcua.Closed || st == opcua.Disconnected {
				return fmt.Errorf("opcua %s: connection %s", r.srv.Name, st)
			}
		case n := <-notifs:
			if n.Error != nil {
				return fmt.Errorf("opcua %s: subscription: %w", r.srv.Name, n.Error)
			}
			alive = time.Now()
			if dc, ok := n.Value.(*ua.DataChangeNotification); ok {
				for _, it := range dc.MonitoredItems {
					r.notifs.Add(1)
					if int(it.ClientHandle) < len(r.srv.Nodes) && it.Value != nil {
						r.deliver(ctx, int(it.ClientHandle), it.Value, true, up)
					}
				}
			}
		case <-poll:
			if err := r.pollOnce(ctx, cl, ids, perRead, up); err != nil {
				return err
			}
			alive = time.Now()
		case <-keep.C:
			if time.Since(alive) < s.keepAlive {
				continue
			}
			kctx, cancel := context.WithTimeout(ctx, s.keepAlive)
			var err error
			if subID != 0 {
				err = r.checkSubscription(kctx, cl, subID)
			} else {
				_, err = cl.Read(kctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{
					NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_State), AttributeID: ua.AttributeIDValue}}})
			}
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return fmt.Errorf("opcua %s: keepalive read: %w", r.srv.Name, err)
			}
			alive = time.Now()
		}
	}
}

// maxPerRead is the node count of one ReadRequest: the configured cap and
// the server's MaxNodesPerRead, whichever is smaller (1000 when neither).
func (r *serverRun) maxPerRead(ctx context.Context, cl *opcua.Client) (int, error) {
	limit := r.srv.MaxNodesPerRead
	rctx, cancel := context.WithTimeout(ctx, r.c.s.timeout)
	defer cancel()
	res, err := cl.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{
		NodeID: ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead), AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return 0, fmt.Errorf("opcua %s: read MaxNodesPerRead: %w", r.srv.Name, err)
	}
	if len(res.Results) == 1 && res.Results[0].Status == ua.StatusOK && res.Results[0].Value != nil {
		if n := int(res.Results[0].Value.Uint()); n > 0 && (limit == 0 || n < limit) {
			limit = n
		}
	}
	if limit == 0 {
		limit = 1000
	}
	return limit, nil
}

// pollOnce reads every resolved node in ReadRequests of at most perRead
// nodes and delivers a frame per node.
func (r *serverRun) pollOnce(ctx context.Context, cl *opcua.Client, ids []*ua.NodeID, perRead int, up gateway.Uplink) error {
	var idx []int
	for i, n := range ids {
		if n != nil {
			idx = append(idx, i)
		}
	}
	for start := 0; start < len(idx); start += perRead {
		part := idx[start:min(start+perRead, len(idx))]
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: make([]*ua.ReadValueID, len(part))}
		for k, i := range part {
			req.NodesToRead[k] = &ua.ReadValueID{NodeID: ids[i], AttributeID: ua.AttributeIDValue}
		}
		rctx, cancel := context.WithTimeout(ctx, r.c.s.timeout)
		t0 := time.Now()
		res, err := cl.Read(rctx, req)
		cancel()
		r.reads.Add(1)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("opcua %s: read %d nodes: %w", r.srv.Name, len(part), err)
		}
		r.stats.Latency(time.Since(t0))
		r.c.stats.Total.Latency(time.Since(t0))
		if len(res.Results) != len(part) {
			r.stats.Malformed()
			r.c.stats.Total.Malformed()
			return fmt.Errorf("opcua %s: read %d nodes: %d results", r.srv.Name, len(part), len(res.Results))
		}
		for k, i := range part {
			r.deliver(ctx, i, res.Results[k], false, up)
		}
	}
	r.cycles.Add(1)
	return nil
}

// subParams are the subscription's parameters: the server sends at
// least a keepalive every keepalive period, and keeps the subscription
// for twelve of them without publish requests.
func (r *serverRun) subParams() *opcua.SubscriptionParameters {
	keepAlive := uint32(max(3, int(r.c.s.keepAlive/r.srv.Interval)))
	return &opcua.SubscriptionParameters{Interval: r.srv.Interval, MaxKeepAliveCount: keepAlive, LifetimeCount: 12 * keepAlive,
		MaxNotificationsPerPublish: opcua.DefaultSubscriptionMaxNotificationsPerPublish}
}

// checkSubscription asks the server to keep the subscription as it is
// (a ModifySubscription with its own parameters): it fails when the
// session or the subscription is gone, which a read alone would not show
// (a server that dropped the subscription, or the client's publish loop
// stopped by an error, while the session lives on).
func (r *serverRun) checkSubscription(ctx context.Context, cl *opcua.Client, id uint32) error {
	p := r.subParams()
	return cl.Send(ctx, &ua.ModifySubscriptionRequest{SubscriptionID: id,
		RequestedPublishingInterval: float64(p.Interval.Milliseconds()), RequestedLifetimeCount: p.LifetimeCount,
		RequestedMaxKeepAliveCount: p.MaxKeepAliveCount, MaxNotificationsPerPublish: p.MaxNotificationsPerPublish},
		func(ua.Response) error { return nil })
}

// subscribe creates the subscription and a monitored item per resolved
// node (client handle: the node's index), in batches of 1000.
func (r *serverRun) subscribe(ctx context.Context, cl *opcua.Client, ids []*ua.NodeID, notifs chan *opcua.PublishNotificationData) (*opcua.Subscription, error) {
	srv := r.srv
	sctx, cancel := context.WithTimeout(ctx, r.c.s.timeout)
	defer cancel()
	sub, err := cl.Subscribe(sctx, r.subParams(), notifs)
	if err != nil {
		return nil, fmt.Errorf("opcua %s: create subscription: %w", srv.Name, err)
	}
	var filter *ua.ExtensionObject
	if srv.Deadband > 0 {
		filter = ua.NewExtensionObject(&ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue,
			DeadbandType: uint32(ua.DeadbandTypeAbsolute), DeadbandValue: srv.Deadband})
	}
	var items []*ua.MonitoredItemCreateRequest
	var handles []int
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		mctx, cancel := context.WithTimeout(ctx, r.c.s.timeout)
		res, err := sub.Monitor(mctx, ua.TimestampsToReturnBoth, items...)
		cancel()
		if err != nil {
			return fmt.Errorf("opcua %s: create monitored items: %w", srv.Name, err)
		}
		for k, it := range res.Results {
			if it.StatusCode != ua.StatusOK && k < len(handles) {
				n := srv.Nodes[handles[k]]
				r.stats.Error()
				r.c.lim.Log(ctx, r.log(), slog.LevelWarn, "item:"+srv.Name+":"+n.Name, "opcua monitored item refused",
					"server", srv.Name, "node", n.Name, "status", it.StatusCode)
			}
		}
		items, handles = items[:0], handles[:0]
		return nil
	}
	for i, n := range ids {
		if n == nil {
			continue
		}
		items = append(items, &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode: ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: uint32(i),
				SamplingInterval: float64(srv.SamplingInterval) / float64(time.Millisecond),
				Filter:           filter, QueueSize: srv.QueueSize, DiscardOldest: true},
		})
		handles = append(handles, i)
		if len(items) == 1000 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return sub, nil
}

// overflowBits are the InfoType DataValue and Overflow bits of a status:
// the server's queue for the item overflowed and values were dropped.
const overflowBits = 0x0480

// deliver turns one DataValue into a frame. In a subscription a value
// that repeats the last delivered one (as the first notification of a
// re-created subscription does) is dropped; a different first value after
// a re-creation, or an overflow, counts as a gap.
func (r *serverRun) deliver(ctx context.Context, i int, dv *ua.DataValue, sub bool, up gateway.Uplink) {
	f := gateway.AcquireFrame()
	var err error
	f.Payload, err = AppendDataValue(f.Payload[:0], dv)
	node := r.srv.Nodes[i]
	if err != nil {
		f.Release()
		r.stats.Malformed()
		r.c.stats.Total.Malformed()
		r.c.lim.Log(ctx, r.log(), slog.LevelWarn, "type:"+r.srv.Name+":"+node.Name, "opcua value not mapped",
			"server", r.srv.Name, "node", node.Name, "err", err)
		return
	}
	lv := &r.last[i]
	if sub {
		// The value alone, without timestamps, is what repeats.
		r.key, _ = AppendDataValue(r.key[:0], &ua.DataValue{Value: dv.Value})
		if lv.have && lv.status == dv.Status && lv.src.Equal(dv.SourceTimestamp) && bytes.Equal(lv.payload, r.key) {
			r.dups.Add(1)
			r.resumed[i] = false
			f.Release()
			return
		}
		if r.resumed[i] && lv.have || uint32(dv.Status)&overflowBits == overflowBits {
			r.gaps.Add(1)
		}
		r.resumed[i] = false
		lv.have, lv.status, lv.src = true, dv.Status, dv.SourceTimestamp
		lv.payload = append(lv.payload[:0], r.key...)
	}
	f.Device, f.Topic = r.srv.Name, node.Name
	n := len(f.Payload)
	if err := up.Deliver(ctx, f); err != nil {
		if ctx.Err() == nil {
			r.stats.Error()
			r.c.stats.Total.Error()
			r.c.lim.Log(ctx, r.log(), slog.LevelWarn, "refused:"+r.srv.Name+":"+node.Name, "opcua frame not accepted",
				"server", r.srv.Name, "node", node.Name, "err", err)
		}
		return
	}
	r.stats.Frame(n)
	r.c.stats.Total.Frame(n)
}

// current returns the session's client and resolved ids, nil when down.
func (r *serverRun) current() (*opcua.Client, []*ua.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.client, r.ids
}

// Write implements gateway.Downlinker: f.Device names the server and
// f.Topic the node (its configured name); the payload is a value payload
// (Codec.Encode builds one). The value is converted to the node's data
// type (read once per session): a value that does not fit fails with
// ErrTypeMismatch before anything is sent. Server refusals map to
// ErrTypeMismatch, ErrNotWritable and ErrAccessDenied.
func (c *Connector) Write(ctx context.Context, f *gateway.Frame) error {
	r := c.servers[f.Device]
	if r == nil {
		return fmt.Errorf("opcua: write: server %q: %w", f.Device, gateway.ErrNoRoute)
	}
	i, ok := r.byName[f.Topic]
	if !ok {
		return fmt.Errorf("opcua %s: write %q: %w", f.Device, f.Topic, ErrUnknownNode)
	}
	var smp Sample
	if err := DecodePayload(f.Payload, &smp); err != nil {
		return fmt.Errorf("opcua %s: write %s: %w", f.Device, f.Topic, err)
	}
	if len(smp.Values) != 1 || smp.Array {
		return fmt.Errorf("opcua %s: write %s: want one scalar value, got %d: %w", f.Device, f.Topic, len(smp.Values), gateway.ErrNotSupported)
	}
	cl, ids := r.current()
	if cl == nil || ids[i] == nil {
		return fmt.Errorf("opcua %s: write %s: %w", f.Device, f.Topic, ErrNotConnected)
	}
	t, err := r.dataType(ctx, cl, i, ids[i])
	if err != nil {
		return fmt.Errorf("opcua %s: write %s: %w", f.Device, f.Topic, err)
	}
	v, err := Convert(smp.Values[0], t)
	if err != nil {
		return fmt.Errorf("opcua %s: write %s: %w", f.Device, f.Topic, err)
	}
	variant, err := ua.NewVariant(v)
	if err != nil {
		return fmt.Errorf("opcua %s: write %s: %w: %v", f.Device, f.Topic, ErrTypeMismatch, err)
	}
	wctx, cancel := context.WithTimeout(ctx, c.s.timeout)
	defer cancel()
	t0 := time.Now()
	res, err := cl.Write(wctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{NodeID: ids[i], AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: variant}}}})
	r.stats.Latency(time.Since(t0))
	if err == nil && len(res.Results) != 1 {
		err = fmt.Errorf("%d results for one write", len(res.Results))
	}
	if err == nil {
		err = writeStatus(res.Results[0])
	}
	if err != nil {
		r.stats.Error()
		c.stats.Total.Error()
		if errors.Is(err, ErrAccessDenied) {
			r.stats.Denied()
			c.stats.Total.Denied()
		}
		return fmt.Errorf("opcua %s: write %s (%s): %w", f.Device, f.Topic, ids[i], err)
	}
	return nil
}

func writeStatus(s ua.StatusCode) error {
	switch s {
	case ua.StatusOK:
		return nil
	case ua.StatusBadTypeMismatch:
		return fmt.Errorf("%w: %w", ErrTypeMismatch, s)
	case ua.StatusBadNotWritable:
		return fmt.Errorf("%w: %w", ErrNotWritable, s)
	case ua.StatusBadUserAccessDenied:
		return fmt.Errorf("%w: %w", ErrAccessDenied, s)
	}
	return s
}

// dataType is the built-in type writes to node i take: its DataType
// attribute when that is a built-in type, else the type of its current
// value (enumerations, subtypes such as UtcTime or Duration).
func (r *serverRun) dataType(ctx context.Context, cl *opcua.Client, i int, n *ua.NodeID) (ua.TypeID, error) {
	r.mu.Lock()
	t, ok := r.types[i]
	r.mu.Unlock()
	if ok {
		return t, nil
	}
	rctx, cancel := context.WithTimeout(ctx, r.c.s.timeout)
	defer cancel()
	res, err := cl.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: n, AttributeID: ua.AttributeIDDataType}, {NodeID: n, AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return 0, fmt.Errorf("read data type: %w", err)
	}
	if len(res.Results) != 2 {
		return 0, fmt.Errorf("read data type: %d results", len(res.Results))
	}
	if dt := res.Results[0]; dt.Status == ua.StatusOK && dt.Value != nil {
		if id := dt.Value.NodeID(); id != nil && id.Namespace() == 0 && id.IntID() >= 1 && id.IntID() <= 15 {
			t = ua.TypeID(id.IntID())
		}
	}
	if t == 0 {
		if v := res.Results[1]; v.Status == ua.StatusOK && v.Value != nil {
			t = v.Value.Type()
		}
	}
	if t == 0 || !supported(t) {
		return 0, fmt.Errorf("%w: node data type is not a built-in scalar type this connector writes", ErrTypeMismatch)
	}
	r.mu.Lock()
	if r.types != nil {
		r.types[i] = t
	}
	r.mu.Unlock()
	return t, nil
}

// Convert converts v to the Go value of built-in type t for a write:
// numbers convert between kinds when the value fits the target exactly
// (no wrap-around, integers only from whole floats); strings parse for
// numbers and Booleans; DateTime takes RFC 3339 text or Unix nanoseconds.
// Anything else is ErrTypeMismatch.
func Convert(v gateway.Value, t ua.TypeID) (any, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s value %q to %s: %s", ErrTypeMismatch, v.Kind(), v.String(), typeName(t), why)
	}
	if v.Kind() == gateway.KindString {
		switch t {
		case ua.TypeIDString:
			return v.Str(), nil
		case ua.TypeIDByteString:
			return []byte(v.Str()), nil
		case ua.TypeIDDateTime:
			ts, err := time.Parse(time.RFC3339Nano, v.Str())
			if err != nil {
				return nil, bad("want RFC 3339 time")
			}
			return ts, nil
		case ua.TypeIDBoolean:
			b, err := strconv.ParseBool(v.Str())
			if err != nil {
				return nil, bad("not a Boolean")
			}
			return b, nil
		}
		if f, err := strconv.ParseFloat(v.Str(), 64); err == nil {
			if i, err := strconv.ParseInt(v.Str(), 10, 64); err == nil {
				return Convert(gateway.Int(i), t)
			}
			if u, err := strconv.ParseUint(v.Str(), 10, 64); err == nil {
				return Convert(gateway.Uint(u), t)
			}
			return Convert(gateway.Float(f), t)
		}
		return nil, bad("not a number")
	}
	switch t {
	case ua.TypeIDBoolean:
		if v.Kind() == gateway.KindBool {
			return v.Bool(), nil
		}
		if v.Kind() == gateway.KindInt || v.Kind() == gateway.KindUint {
			switch v.Uint() {
			case 0:
				return false, nil
			case 1:
				return true, nil
			}
		}
		return nil, bad("want true, false, 0 or 1")
	case ua.TypeIDString:
		if v.Kind() == gateway.KindBytes {
			return nil, bad("bytes are not text")
		}
		return v.String(), nil
	case ua.TypeIDByteString:
		if v.Kind() == gateway.KindBytes {
			return []byte(v.Str()), nil
		}
		return nil, bad("want bytes")
	case ua.TypeIDFloat, ua.TypeIDDouble:
		var f float64
		switch v.Kind() {
		case gateway.KindFloat:
			f = v.Float()
		case gateway.KindInt:
			f = float64(v.Int())
			if int64(f) != v.Int() {
				return nil, bad("not exact as a float")
			}
		case gateway.KindUint:
			f = float64(v.Uint())
			if f >= 1<<64 || uint64(f) != v.Uint() {
				return nil, bad("not exact as a float")
			}
		default:
			return nil, bad("want a number")
		}
		if t == ua.TypeIDFloat {
			if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
				return nil, bad("out of Float range")
			}
			return float32(f), nil
		}
		return f, nil
	case ua.TypeIDDateTime:
		if v.Kind() == gateway.KindInt {
			return time.Unix(0, v.Int()).UTC(), nil
		}
		return nil, bad("want RFC 3339 text or Unix nanoseconds")
	}
	// Integer targets.
	lo, hi, signed := intRange(t)
	if hi == 0 {
		return nil, bad("unsupported target type")
	}
	var neg bool
	var mag uint64
	switch v.Kind() {
	case gateway.KindInt:
		neg, mag = v.Int() < 0, uint64(v.Int())
		if neg {
			mag = uint64(-(v.Int() + 1)) + 1
		}
	case gateway.KindUint:
		mag = v.Uint()
	case gateway.KindBool:
		mag = v.Uint()
	case gateway.KindFloat:
		f := v.Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) || f < -(1<<63) || f >= 1<<64 {
			return nil, bad("not a whole number in range")
		}
		if f < 0 {
			neg, mag = true, uint64(-f)
		} else {
			mag = uint64(f)
		}
	default:
		return nil, bad("want a number")
	}
	if neg && (!signed || mag > lo) || !neg && mag > hi {
		return nil, bad("out of range")
	}
	var i int64
	if neg {
		i = -int64(mag-1) - 1
	} else {
		i = int64(mag)
	}
	switch t {
	case ua.TypeIDSByte:
		return int8(i), nil
	case ua.TypeIDByte:
		return uint8(mag), nil
	case ua.TypeIDInt16:
		return int16(i), nil
	case ua.TypeIDUint16:
		return uint16(mag), nil
	case ua.TypeIDInt32:
		return int32(i), nil
	case ua.TypeIDUint32:
		return uint32(mag), nil
	case ua.TypeIDInt64:
		return i, nil
	}
	return mag, nil // UInt64
}

// intRange is the magnitude of the most negative value (lo), the largest
// value (hi) and the signedness of an integer type; hi 0 for others.
func intRange(t ua.TypeID) (lo, hi uint64, signed bool) {
	switch t {
	case ua.TypeIDSByte:
		return 128, math.MaxInt8, true
	case ua.TypeIDByte:
		return 0, math.MaxUint8, false
	case ua.TypeIDInt16:
		return 1 << 15, math.MaxInt16, true
	case ua.TypeIDUint16:
		return 0, math.MaxUint16, false
	case ua.TypeIDInt32:
		return 1 << 31, math.MaxInt32, true
	case ua.TypeIDUint32:
		return 0, math.MaxUint32, false
	case ua.TypeIDInt64:
		return 1 << 63, math.MaxInt64, true
	case ua.TypeIDUint64:
		return 0, math.MaxUint64, false
	}
	return 0, 0, false
}

// Probe opens a session to the named server as the connector would (the
// endpoint selection, certificate checks and authentication) and closes
// it: a configuration check that returns the error a session would hit,
// such as ErrAuth, ErrUntrustedServer or ErrCertRejected.
func (c *Connector) Probe(ctx context.Context, server string) error {
	r := c.servers[server]
	if r == nil {
		return fmt.Errorf("opcua: probe: server %q: %w", server, gateway.ErrNoRoute)
	}
	cl, _, err := r.connect(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cl.Close(cctx)
}
