package shaping

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// maxBackoff caps how far repeated event loss stretches the sampling
// interval (a factor of 64).
const maxBackoff = 64

// Sampler decides the sampling rate N (one event per N packets) from what
// happened on the link. The rules, first match wins:
//   - the link is busier than BusyPercent: Busy (default 1:5000), so
//     sampling does not add to a saturated link's load;
//   - a route was added within RouteHold: AfterRoute (default 1:100 for
//     60 s), to watch new paths closely;
//   - otherwise Every (default 1:1000).
//
// On top, events lost in two consecutive observations double N (up to 64x);
// eight clean observations in a row halve it again.
// Sampler holds no goroutines; the Shaper feeds it. It is safe for
// concurrent use.
type Sampler struct {
	mu          sync.Mutex
	cfg         SamplingConfig
	lastRoute   time.Time
	busy        bool
	lossStreak  int
	cleanStreak int
	backoff     uint32
}

// NewSampler returns a Sampler in the normal state.
func NewSampler(cfg SamplingConfig) *Sampler {
	return &Sampler{cfg: cfg.withDefaults(), backoff: 1}
}

// SetConfig replaces the policy, keeping the observed state.
func (s *Sampler) SetConfig(cfg SamplingConfig) {
	s.mu.Lock()
	s.cfg = cfg.withDefaults()
	s.mu.Unlock()
}

// RouteAdded records a new route at now.
func (s *Sampler) RouteAdded(now time.Time) {
	s.mu.Lock()
	s.lastRoute = now
	s.mu.Unlock()
}

// Observe records one interval: utilisation is the busier direction's
// share of the link (0..1), lost the events lost during the interval.
func (s *Sampler) Observe(utilisation float64, lost uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = utilisation*100 > float64(s.cfg.BusyPercent)
	if lost > 0 {
		s.cleanStreak = 0
		s.lossStreak++
		if s.lossStreak >= 2 {
			s.lossStreak = 0
			s.backoff = min(s.backoff*2, maxBackoff)
		}
		return
	}
	s.lossStreak = 0
	s.cleanStreak++
	if s.cleanStreak >= 8 && s.backoff > 1 {
		s.cleanStreak = 0
		s.backoff /= 2
	}
}

// Every returns N for now; 0 means sampling is off.
func (s *Sampler) Every() uint32 { return s.EveryAt(time.Now()) }

// EveryAt returns N at the given time; 0 means sampling is off.
func (s *Sampler) EveryAt(now time.Time) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Every < 0 {
		return 0
	}
	n := uint32(s.cfg.Every)
	switch {
	case s.busy:
		n = s.cfg.Busy
	case !s.lastRoute.IsZero() && now.Sub(s.lastRoute) < s.cfg.RouteHold:
		n = s.cfg.AfterRoute
	}
	return n * s.backoff
}

// dialRoutes subscribes to IPv4 and IPv6 route changes in the current
// network namespace.
func dialRoutes() (*netlink.Conn, error) {
	return netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{
		Groups: unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE,
	})
}

// watchRoutes calls added for every new unicast route outside the local
// table until c is closed.
func watchRoutes(c *netlink.Conn, closing func() bool, added func()) {
	for {
		msgs, err := c.Receive()
		if err != nil {
			if closing() {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				added() // overrun: routes changed faster than we read
				continue
			}
			return
		}
		for _, m := range msgs {
			if isNewRoute(m) {
				added()
			}
		}
	}
}

// RouteMessage is the fixed header of an rtnetlink route message (struct
// rtmsg).
type RouteMessage struct {
	Family, DstLen, SrcLen, TOS, Table, Protocol, Scope, Type uint8
	Flags                                                     uint32
}

// ParseRouteMessage decodes the rtmsg header at the start of b.
func ParseRouteMessage(b []byte) (RouteMessage, error) {
	if len(b) < 12 {
		return RouteMessage{}, errors.New("shaping: route message shorter than rtmsg (12 bytes)")
	}
	return RouteMessage{Family: b[0], DstLen: b[1], SrcLen: b[2], TOS: b[3], Table: b[4],
		Protocol: b[5], Scope: b[6], Type: b[7], Flags: binary.NativeEndian.Uint32(b[8:12])}, nil
}

func isNewRoute(m netlink.Message) bool {
	if m.Header.Type != unix.RTM_NEWROUTE {
		return false
	}
	rm, err := ParseRouteMessage(m.Data)
	if err != nil {
		return false
	}
	return rm.Table != unix.RT_TABLE_LOCAL && rm.Type == unix.RTN_UNICAST
}
