package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/dtlsx"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/limitread"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/waitctx"
	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpserver "github.com/plgd-dev/go-coap/v3/udp/server"
)

// socketBuffer is the receive buffer asked for on a socket the connector
// opens itself (WithPacketConn keeps the caller's).
const socketBuffer = 1 << 20

// Stats are the connector's counters; see Connector.Stats.
type Stats = connstats.Stats

// ConnListener yields one net.Conn per peer, the way a DTLS listener
// does. Give one to WithConnListener to serve CoAP over a secured
// transport; the connector treats each conn as one device session.
type ConnListener interface {
	AcceptWithContext(ctx context.Context) (net.Conn, error)
	Close() error
}

// Connector is the CoAP device connector: a server devices POST/PUT to,
// observers of device resources, and downlink requests to devices.
type Connector struct {
	s       settings
	stats   connstats.Table
	denyLog *lograte.Limiter // refused identities, one line per identity and device a minute

	mu      sync.Mutex
	cancel  context.CancelFunc
	udpSrv  *udpserver.Server
	connSrv *dtlsserver.Server
	udpConn *coapnet.UDPConn
	pc      *net.UDPConn
	dtlsLn  *dtlsx.Listener
	session *sessionStore     // WithDTLSSessionStore, while connected
	pipe    *gateway.Pipeline // requests deliver through it, while connected
	pipeUp  gateway.Uplink    // the Uplink pipe delivers to
	front   *udpFront
	addr    net.Addr
	wg      sync.WaitGroup
	peers   map[string]*udpclient.Conn // downlink connections by device
	libLog  *lograte.Limiter           // go-coap's own errors
}

var (
	_ gateway.DeviceConnector = (*Connector)(nil)
	_ gateway.Downlinker      = (*Connector)(nil)
)

// New builds a connector. Nothing listens until Connect.
func New(opts ...Option) (*Connector, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("coap: %w", err)
		}
	}
	if len(s.identities) > 0 && !s.dtls && s.connListener == nil {
		return nil, errors.New("coap: identity devices need WithDTLS or WithConnListener")
	}
	if s.sessionStore != "" && !s.dtls {
		return nil, errors.New("coap: a DTLS session store needs WithDTLS")
	}
	return &Connector{s: s, peers: map[string]*udpclient.Conn{}, denyLog: lograte.New(time.Minute), libLog: lograte.New(time.Minute)}, nil
}

// libErrors routes go-coap's own error reports (it prints them to stdout
// by default) to the connector's logger, at most one line a minute with
// a count of those suppressed.
func (c *Connector) libErrors() options.ErrorsOpt {
	return options.WithErrors(c.libError)
}

func (c *Connector) libError(err error) {
	c.libLog.Log(context.Background(), c.s.logger, slog.LevelWarn, "go-coap", "coap: go-coap", "err", err)
}

// Stats returns the connector's and each device's counters.
func (c *Connector) Stats() Stats { return c.stats.Stats() }

// StatsReport implements gateway.StatsReporter: the totals and at most
// maxDevices devices (see connstats.Report).
func (c *Connector) StatsReport(maxDevices int) any { return c.stats.Report(maxDevices) }

var _ gateway.StatsReporter = (*Connector)(nil)

// Addr returns the local address of the server once connected, or nil.
func (c *Connector) Addr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

func (c *Connector) blockwise() options.BlockwiseOpt {
	return options.WithBlockwise(true, blockwise.SZX1024, c.s.blockTimeout)
}

// Connect starts the server (unless disabled) and the observers.
func (c *Connector) Connect(ctx context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("coap: already connected")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	router := mux.NewRouter()
	router.SetErrorHandler(c.libError)
	router.DefaultHandle(&ingest{c: c, up: up, ctx: runCtx})
	switch {
	case c.s.connListener != nil:
		c.connSrv = c.serveConns(runCtx, router, c.s.connListener)
	case c.s.dtls:
		dopts := c.s.dtlsOpts
		if c.s.sessionStore != "" {
			ss, err := openSessionStore(ctx, c.s.sessionStore, c.s.sessionRing, c.s.logger, c.s.sessionOpts)
			if err != nil {
				cancel()
				return fmt.Errorf("coap: %w", err)
			}
			c.session = ss
			dopts = append(slices.Clip(dopts), dtlsx.WithSessionCache(ss.cache))
		}
		var ln *dtlsx.Listener
		var err error
		if c.s.packetConn != nil {
			ln, err = dtlsx.NewListener(c.s.packetConn, dopts...)
		} else {
			ln, err = dtlsx.Listen("udp", c.s.addr, dopts...)
		}
		if err != nil {
			cancel()
			c.session.close()
			c.session = nil
			return fmt.Errorf("coap: dtls listen %s: %w", c.s.addr, err)
		}
		c.dtlsLn, c.addr = ln, ln.Addr()
		c.connSrv = c.serveConns(runCtx, router, ln)
	case c.s.packetConn != nil || c.s.addr != "":
		pc := c.s.packetConn
		if pc == nil {
			var lc net.ListenConfig
			p, err := lc.ListenPacket(ctx, "udp", c.s.addr)
			if err != nil {
				cancel()
				return fmt.Errorf("coap: listen %s: %w", c.s.addr, err)
			}
			pc = p.(*net.UDPConn)
			// Room for a burst from many devices at once; the kernel
			// caps it at net.core.rmem_max, so this is best effort.
			_ = pc.SetReadBuffer(socketBuffer)
		}
		c.addr, c.pc = pc.LocalAddr(), pc
		if c.s.fastPath {
			front := newUDPFront(c, pc, up, runCtx)
			c.front = front
			c.connSrv = c.serveConns(runCtx, router, front.pass)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				front.run(c.s.readers)
			}()
			break
		}
		l := coapnet.NewUDPConn("udp", pc)
		srv := udp.NewServer(options.WithMux(router), options.WithContext(runCtx), c.libErrors(),
			options.WithMaxMessageSize(uint32(c.s.maxBody)+1024), c.blockwise(),
			options.WithTransmission(1, c.s.ackTimeout, 4))
		c.udpSrv, c.udpConn = srv, l
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := srv.Serve(l); err != nil && runCtx.Err() == nil {
				c.s.logger.Error("coap: serve", "err", err)
			}
		}()
	}
	for _, o := range c.s.observes {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.observe(runCtx, o, up)
		}()
	}
	c.cancel = cancel
	c.pipe = gateway.NewPipeline(up, c.s.window, c.s.deliverTimeout)
	c.pipeUp = up
	return nil
}

// serveConns runs go-coap's connection-oriented server on ln, one
// session per conn: the DTLS transport, an injected ConnListener, and the
// datagrams the plain-UDP fast path passes on.
func (c *Connector) serveConns(runCtx context.Context, router *mux.Router, ln ConnListener) *dtlsserver.Server {
	srv := dtlsserver.New(options.WithMux(router), options.WithContext(runCtx), c.libErrors(),
		options.WithMaxMessageSize(uint32(c.s.maxBody)+1024), c.blockwise(),
		options.WithTransmission(1, c.s.ackTimeout, 4),
		options.WithInactivityMonitor(c.s.sessionIdle, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithOnNewConn(rememberAuth))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := srv.Serve(ln); err != nil && runCtx.Err() == nil {
			c.s.logger.Error("coap: serve", "err", err)
		}
	}()
	return srv
}

// DTLSStats returns the counters of the DTLS listener (handshakes,
// failures, timeouts) while connected with WithDTLS.
func (c *Connector) DTLSStats() (dtlsx.Stats, bool) {
	c.mu.Lock()
	ln := c.dtlsLn
	c.mu.Unlock()
	if ln == nil {
		return dtlsx.Stats{}, false
	}
	return ln.Stats(), true
}

// Disconnect stops the server, the observers and downlink connections,
// and waits for them.
func (c *Connector) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	cancel, udpSrv, connSrv, udpConn, pc, dtlsLn, session := c.cancel, c.udpSrv, c.connSrv, c.udpConn, c.pc, c.dtlsLn, c.session
	c.cancel, c.udpSrv, c.connSrv, c.udpConn, c.addr, c.pc, c.dtlsLn, c.front, c.session = nil, nil, nil, nil, nil, nil, nil, nil, nil
	peers := c.peers
	c.peers = map[string]*udpclient.Conn{}
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	if udpSrv != nil {
		udpSrv.Stop()
		_ = udpConn.Close()
	}
	if connSrv != nil {
		connSrv.Stop()
	}
	if dtlsLn != nil {
		_ = dtlsLn.Close()
	}
	session.close()
	if pc != nil && udpConn == nil {
		_ = pc.Close()
	}
	for _, p := range peers {
		_ = p.Close()
	}
	if err := waitctx.Wait(ctx, &c.wg); err != nil {
		return fmt.Errorf("coap: disconnect: %w", err)
	}
	c.mu.Lock()
	pipe := c.pipe
	c.pipe, c.pipeUp = nil, nil
	c.mu.Unlock()
	if pipe != nil {
		pipe.Close()
	}
	return nil
}

// deliver hands f to up through the connector's pipeline, so that
// concurrent requests share a batch, decoding it first (a payload the
// codec rejects gets 4.00, not 2.04).
func (c *Connector) deliver(ctx context.Context, up gateway.Uplink, f *gateway.Frame) error {
	c.mu.Lock()
	p := c.pipe
	if c.pipeUp != up {
		p = nil
	}
	c.mu.Unlock()
	if p == nil {
		return gateway.DeliverChecked(ctx, up, f)
	}
	return p.Deliver(ctx, f, true)
}

// ParsePath splits a request path "/<prefix>/<device>/<topic...>" into
// device and topic. prefix may be empty ("/<device>/<topic...>").
func ParsePath(prefix, path string) (device, topic string, err error) {
	p := strings.TrimPrefix(path, "/")
	if prefix != "" {
		rest, ok := strings.CutPrefix(p, prefix+"/")
		if !ok {
			return "", "", fmt.Errorf("path %q: want /%s/<device>/<topic>", path, prefix)
		}
		p = rest
	}
	device, topic, ok := strings.Cut(p, "/")
	if !ok || device == "" || topic == "" {
		return "", "", fmt.Errorf("path %q: want /%s<device>/<topic>", path, prefixSlash(prefix))
	}
	if len(device) > 128 || strings.ContainsAny(device, "+#") || hasControl(device) {
		return "", "", fmt.Errorf("path %q: invalid device id", path)
	}
	if len(topic) > 256 || strings.ContainsAny(topic, "+#") || hasControl(topic) || strings.Contains(topic, "//") || strings.HasSuffix(topic, "/") {
		return "", "", fmt.Errorf("path %q: invalid topic", path)
	}
	return device, topic, nil
}

func prefixSlash(p string) string {
	if p == "" {
		return ""
	}
	return p + "/"
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

type ingest struct {
	c   *Connector
	up  gateway.Uplink
	ctx context.Context
}

func respond(w mux.ResponseWriter, code codes.Code, reason string, opts ...message.Option) {
	var body *bytes.Reader
	if reason != "" {
		body = bytes.NewReader([]byte(reason))
	}
	if body == nil {
		_ = w.SetResponse(code, message.TextPlain, nil, opts...)
		return
	}
	_ = w.SetResponse(code, message.TextPlain, body, opts...)
}

// maxAge1 tells a client when to retry a 5.03: in one second.
func maxAge1() message.Option { return message.Option{ID: message.MaxAge, Value: []byte{1}} }

func (h *ingest) ServeCOAP(w mux.ResponseWriter, r *mux.Message) {
	c := h.c
	if r.Code() == codes.GET {
		if p, err := r.Path(); err == nil && p == "/.well-known/core" {
			// RFC 6690 discovery: where devices send their data.
			link := fmt.Sprintf("</%s>;rt=\"ingest\";title=\"POST or PUT /%s<device>/<topic>\"", c.s.prefix, prefixSlash(c.s.prefix))
			_ = w.SetResponse(codes.Content, message.AppLinkFormat, bytes.NewReader([]byte(link)))
			return
		}
	}
	if r.Code() != codes.POST && r.Code() != codes.PUT {
		respond(w, codes.MethodNotAllowed, "only POST and PUT")
		return
	}
	path, err := r.Path()
	if err != nil {
		c.stats.Total.Malformed()
		respond(w, codes.BadRequest, "no path")
		return
	}
	var body io.Reader
	if b := r.Body(); b != nil {
		body = b
	}
	auth, _ := w.Conn().Context().Value(authKey{}).(*peerAuth)
	o := c.ingest(h.ctx, h.up, auth, path, nil, body, optionTrace(r.Options()))
	if o.badPath != nil {
		c.s.logger.Warn("coap: bad request path", "remote", w.Conn().RemoteAddr().String(), "err", o.badPath)
	}
	var opts []message.Option
	if o.maxAge1 {
		opts = append(opts, maxAge1())
	}
	respond(w, codes.Code(o.code), o.reason, opts...)
}

// outcome is the answer to one ingest request.
type outcome struct {
	code    uint8 // CoAP code, class<<5 | detail
	reason  string
	maxAge1 bool
	badPath error // the path did not name a device and topic
}

// ingestBytes is ingest for the fast path: a single-datagram payload and
// the deadline context of the reader.
func (c *Connector) ingestBytes(ctx context.Context, up gateway.Uplink, path, payload []byte, from netip.AddrPort) outcome {
	o := c.ingest(ctx, up, nil, string(path), payload, nil, gateway.TraceContext{})
	if o.badPath != nil {
		c.s.logger.Warn("coap: bad request path", "remote", from.String(), "err", o.badPath)
	}
	return o
}

// ingest turns one POST/PUT into a frame, delivers it and says how to
// answer: 2.04 only once the pipeline accepted the frame, 4.01/4.03 when
// the DTLS identity auth may not send as the path's device (nil auth: an
// unsecured transport, not checked). The payload
// comes from payload or, when body is not nil, from body. ctx bounds the
// delivery by WithTimeouts' deliver timeout unless it already has a
// deadline. The caller logs a bad path with the peer's address.
func (c *Connector) ingest(ctx context.Context, up gateway.Uplink, auth *peerAuth, path string, payload []byte, body io.Reader, tc gateway.TraceContext) outcome {
	device, topic, err := ParsePath(c.s.prefix, path)
	if err != nil {
		c.stats.Total.Malformed()
		return outcome{code: codeBadRequest, reason: err.Error(), badPath: err}
	}
	if o, ok := c.authorize(auth, device); !ok {
		return o
	}
	ds := c.stats.Device(device)
	fail := func(code uint8, reason string, malformed, maxAge bool) outcome {
		ds.Error()
		c.stats.Total.Error()
		if malformed {
			ds.Malformed()
			c.stats.Total.Malformed()
		}
		return outcome{code: code, reason: reason, maxAge1: maxAge}
	}
	f := gateway.AcquireFrame()
	if body != nil {
		f.Payload, err = limitread.Append(f.Payload[:0], body, c.s.maxBody)
	} else if int64(len(payload)) > c.s.maxBody {
		err = limitread.ErrTooLarge
	} else {
		f.Payload = append(f.Payload[:0], payload...)
	}
	if err != nil {
		f.Release()
		if errors.Is(err, limitread.ErrTooLarge) {
			return fail(codeEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", c.s.maxBody), false, false)
		}
		return fail(codeBadRequest, "reading body: "+err.Error(), true, false)
	}
	if len(f.Payload) == 0 {
		f.Release()
		return fail(codeBadRequest, "empty body", true, false)
	}
	f.Device, f.Topic, f.Trace = device, topic, tc
	n := len(f.Payload)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.s.deliverTimeout)
		defer cancel()
	}
	start := time.Now()
	err = c.deliver(ctx, up, f) // a payload the codec rejects gets 4.00, not 2.04
	ds.Latency(time.Since(start))
	switch {
	case err == nil:
		ds.Frame(n)
		c.stats.Total.Frame(n)
		return outcome{code: codeChanged}
	case errors.Is(err, gateway.ErrMalformedPayload):
		return fail(codeBadRequest, err.Error(), true, false)
	case errors.Is(err, gateway.ErrDropped):
		return fail(codeServiceUnavail, "gateway queue full", false, true)
	case errors.Is(err, gateway.ErrClosed):
		return fail(codeServiceUnavail, "gateway shutting down", false, true)
	default:
		return fail(codeServiceUnavail, "not accepted: "+err.Error(), false, true)
	}
}

// observe keeps an observation of one device resource, re-registering
// with backoff when the device stops answering, and also when no
// notification arrived for o.Refresh (a restarted device forgets its
// observers without telling them).
func (c *Connector) observe(ctx context.Context, o Observe, up gateway.Uplink) {
	ds := c.stats.Device(o.Device)
	bo := backoff.Backoff{Min: c.s.backoffMin, Max: c.s.backoffMax, Stable: 10 * time.Second}
	sessions := 0
	for ctx.Err() == nil {
		err := c.observeOnce(ctx, o, up, ds, sessions > 0, func() { sessions++; bo.Up() })
		if ctx.Err() != nil {
			return
		}
		ds.Error()
		c.stats.Total.Error()
		wait := bo.Next()
		c.s.logger.Warn("coap: observation ended; re-registering", "device", o.Device, "address", o.Address,
			"path", o.Path, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

func (c *Connector) observeOnce(ctx context.Context, o Observe, up gateway.Uplink, ds *connstats.Counters, again bool, registered func()) error {
	conn, err := udp.Dial(o.Address, options.WithContext(ctx), c.blockwise(), c.libErrors(),
		options.WithKeepAlive(3, c.s.keepAlive, func(cc *udpclient.Conn) { _ = cc.Close() }),
		options.WithMaxMessageSize(uint32(c.s.maxBody)+1024))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	notified := make(chan struct{}, 1)
	failed := make(chan error, 1)
	handler := func(n *pool.Message) {
		if n.Code() != codes.Content && n.Code() != codes.Valid {
			select {
			case failed <- fmt.Errorf("device answered %v", n.Code()):
			default:
			}
			return
		}
		f := gateway.AcquireFrame()
		var rerr error
		f.Payload, rerr = limitread.Append(f.Payload[:0], n.Body(), c.s.maxBody)
		if rerr != nil {
			f.Release()
			ds.Malformed()
			c.stats.Total.Malformed()
			c.s.logger.Warn("coap: bad notification", "device", o.Device, "err", rerr)
			return
		}
		f.Device, f.Topic = o.Device, o.Topic
		size := len(f.Payload)
		dctx, cancel := context.WithTimeout(ctx, c.s.deliverTimeout)
		derr := up.Deliver(dctx, f)
		cancel()
		if derr != nil {
			ds.Error()
			c.stats.Total.Error()
			c.s.logger.Warn("coap: notification not accepted", "device", o.Device, "err", derr)
		} else {
			ds.Frame(size)
			c.stats.Total.Frame(size)
		}
		select {
		case notified <- struct{}{}:
		default:
		}
	}
	rctx, cancel := context.WithTimeout(ctx, c.s.requestTimeout)
	start := time.Now()
	obs, err := conn.Observe(rctx, o.Path, handler)
	cancel()
	if err != nil {
		return fmt.Errorf("observe %s: %w", o.Path, err)
	}
	ds.Latency(time.Since(start))
	if again {
		ds.Reconnect()
		c.stats.Total.Reconnect()
	}
	registered()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), c.s.requestTimeout)
		_ = obs.Cancel(cctx)
		cancel()
	}()
	idle := time.NewTimer(o.Refresh)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Done():
			return errors.New("device stopped answering keepalives")
		case err := <-failed:
			return err
		case <-notified:
			idle.Reset(o.Refresh)
		case <-idle.C:
			return fmt.Errorf("no notification for %v", o.Refresh)
		}
	}
}

// Write implements gateway.Downlinker: it sends the payload to the
// device's address (WithDeviceAddress, or its Observe address) as a
// confirmable POST or PUT (WithDownlinkMethod) to path "/"+f.Topic and
// expects a 2.xx answer.
func (c *Connector) Write(ctx context.Context, f *gateway.Frame) error {
	addr, ok := c.s.addresses[f.Device]
	if !ok {
		return fmt.Errorf("coap: write: device %q has no address: %w", f.Device, gateway.ErrNoRoute)
	}
	if f.Topic == "" || hasControl(f.Topic) {
		return fmt.Errorf("coap %s: write: invalid path %q", f.Device, f.Topic)
	}
	conn, err := c.peer(ctx, f.Device, addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.requestTimeout)
	defer cancel()
	path := "/" + strings.TrimPrefix(f.Topic, "/")
	body := bytes.NewReader(f.Payload)
	var resp *pool.Message
	if c.s.downlinkPut {
		resp, err = conn.Put(ctx, path, message.AppOctets, body)
	} else {
		resp, err = conn.Post(ctx, path, message.AppOctets, body)
	}
	if err != nil {
		c.dropPeer(f.Device, conn)
		c.stats.Device(f.Device).Error()
		return fmt.Errorf("coap %s: write %s: %w", f.Device, path, err)
	}
	code := resp.Code()
	conn.ReleaseMessage(resp)
	if code < codes.Created || code > codes.Content {
		c.stats.Device(f.Device).Error()
		return fmt.Errorf("coap %s: write %s: device answered %v", f.Device, path, code)
	}
	return nil
}

func (c *Connector) peer(ctx context.Context, device, addr string) (*udpclient.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil {
		return nil, fmt.Errorf("coap %s: write: %w", device, gateway.ErrClosed)
	}
	if p := c.peers[device]; p != nil {
		select {
		case <-p.Done():
		default:
			return p, nil
		}
	}
	p, err := udp.Dial(addr, c.blockwise(), c.libErrors(), options.WithMaxMessageSize(uint32(c.s.maxBody)+1024),
		options.WithKeepAlive(3, c.s.keepAlive, func(cc *udpclient.Conn) { _ = cc.Close() }))
	if err != nil {
		return nil, fmt.Errorf("coap %s: dial %s: %w", device, addr, err)
	}
	_ = ctx
	c.peers[device] = p
	return p, nil
}

func (c *Connector) dropPeer(device string, p *udpclient.Conn) {
	c.mu.Lock()
	if c.peers[device] == p {
		delete(c.peers, device)
	}
	c.mu.Unlock()
	_ = p.Close()
}
