package coap

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		d       []byte
		err     error
		ingest  bool
		path    string
		payload string
	}{
		{"CON POST", rawPost("d1", []byte("x")), nil, true, "/devices/d1/env", "x"},
		{"ping", []byte{0x40, 0, 0, 1}, nil, false, "", ""},
		{"GET", []byte{0x40, 0x01, 0, 1, 0xb1, 'a'}, nil, false, "/a", ""},
		{"Block1", []byte{0x40, 0x02, 0, 1, 0xb1, 'a', 0xd1, 27 - 11 - 13, 0x08, 0xff, 'p'}, nil, false, "/a", "p"},
		{"Observe", []byte{0x40, 0x02, 0, 1, 0x60, 0x51, 'a', 0xff, 'p'}, nil, false, "/a", "p"},
		{"query ignored", []byte{0x50, 0x03, 0, 1, 0xb1, 'a', 0x41, 'q', 0xff, 'p'}, nil, true, "/a", "p"},
		{"extended length", append([]byte{0x40, 0x02, 0, 1, 0xbd, 0}, bytes.Repeat([]byte("s"), 13)...), nil, true, "/sssssssssssss", ""},
		{"ACK", []byte{0x60, 0x44, 0, 1}, nil, false, "", ""},
		{"short", []byte{0x40}, errTooShort, false, "", ""},
		{"version 0", []byte{0x00, 0x02, 0, 1}, errVersion, false, "", ""},
		{"token 9", []byte{0x49, 0x02, 0, 1}, errFormat, false, "", ""},
		{"empty with token", []byte{0x41, 0, 0, 1, 7}, errFormat, false, "", ""},
		{"length 15", []byte{0x40, 0x02, 0, 1, 0xbf}, errFormat, false, "", ""},
		{"delta 14 truncated", []byte{0x40, 0x02, 0, 1, 0xe0, 1}, errFormat, false, "", ""},
		{"number overflow", []byte{0x40, 0x02, 0, 1, 0xe0, 0xff, 0xff, 0xe0, 0xff, 0xff}, errFormat, false, "", ""},
	}
	for _, tt := range tests {
		var m wireMessage
		err := parseMessage(tt.d, &m, nil)
		if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if m.isIngest() != tt.ingest || string(m.Path) != tt.path || string(m.Payload) != tt.payload {
			t.Errorf("%s: ingest %v path %q payload %q", tt.name, m.isIngest(), m.Path, m.Payload)
		}
	}
}

// TestResponseDecodesWithGoCoAP: go-coap's decoder reads our answers.
func TestResponseDecodesWithGoCoAP(t *testing.T) {
	d := appendResponse(nil, typeACK, codeServiceUnavail, 0x1234, []byte{1, 2, 3}, true, "gateway queue full")
	m := message.Message{Options: make(message.Options, 0, 8)}
	if _, err := coder.DefaultCoder.Decode(d, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != message.Acknowledgement || m.Code != codes.ServiceUnavailable || m.MessageID != 0x1234 ||
		!bytes.Equal(m.Token, []byte{1, 2, 3}) || string(m.Payload) != "gateway queue full" {
		t.Fatalf("decoded %+v", m)
	}
	if age, err := m.Options.GetUint32(message.MaxAge); err != nil || age != 1 {
		t.Fatalf("max-age %d %v", age, err)
	}
	if cf, err := m.Options.ContentFormat(); err != nil || cf != message.TextPlain {
		t.Fatalf("content-format %v %v", cf, err)
	}
}

// FuzzParseMessage: any datagram parses without panic; what the fast
// path accepts, go-coap's decoder accepts with the same fields.
func FuzzParseMessage(f *testing.F) {
	f.Add(rawPost("d1", []byte("x")))
	f.Add([]byte{0x40, 0, 0, 1})
	f.Add([]byte{0x40, 0x02, 0, 1, 0xb1, 'a', 0xd1, 3, 0x08, 0xff, 'p'})
	f.Add([]byte{0x50, 0x03, 0, 1, 0xe0, 0, 1, 0xff})
	f.Fuzz(func(t *testing.T, d []byte) {
		var m wireMessage
		if err := parseMessage(d, &m, nil); err != nil || !m.isIngest() {
			return
		}
		g := message.Message{Options: make(message.Options, 0, len(d))}
		if _, err := coder.DefaultCoder.Decode(d, &g); err != nil {
			t.Fatalf("we accept % x, go-coap does not: %v", d, err)
		}
		gp, err := g.Options.Path()
		if len(m.Path) == 0 {
			gp, err = "", nil
		}
		if err != nil || uint16(g.MessageID) != m.MID || !bytes.Equal(g.Token, m.Token) || !bytes.Equal(g.Payload, m.Payload) ||
			uint8(g.Code) != m.Code || string(m.Path) != gp {
			t.Fatalf("% x: ours mid %d token % x path %q payload %q; go-coap %d % x %q %q",
				d, m.MID, m.Token, m.Path, m.Payload, g.MessageID, g.Token, gp, g.Payload)
		}
	})
}

func TestExchangeCache(t *testing.T) {
	c := newExchangeCache(dedupShards * 2) // two entries per shard
	now := time.Unix(1000, 0)
	peer := netip.MustParseAddrPort("10.0.0.1:5683")
	k := exchangeKey{peer, 7}
	st, seq, _ := c.claim(k, now, time.Minute)
	if st != claimNew {
		t.Fatal("first claim not new")
	}
	if st, _, _ := c.claim(k, now, time.Minute); st != claimPending {
		t.Fatalf("second claim %v, want pending", st)
	}
	c.answer(k, seq, codeChanged, false, "")
	if st, _, e := c.claim(k, now, time.Minute); st != claimAnswered || e.code != codeChanged {
		t.Fatalf("claim after answer %v %+v", st, e)
	}
	if st, _, _ := c.claim(k, now.Add(time.Minute), time.Minute); st != claimNew {
		t.Fatalf("claim after lifetime %v, want new", st)
	}
	// Fill far beyond the limit: the size stays bounded.
	for i := range 10000 {
		c.claim(exchangeKey{peer, uint16(i)}, now.Add(2*time.Minute), time.Minute)
	}
	if n := c.len(); n > dedupShards*2 {
		t.Fatalf("%d entries, limit %d", n, dedupShards*2)
	}
	// forget lets a retransmission be handled afresh.
	k2 := exchangeKey{peer, 60000}
	_, seq2, _ := c.claim(k2, now.Add(3*time.Minute), time.Minute)
	c.forget(k2, seq2)
	if st, _, _ := c.claim(k2, now.Add(3*time.Minute), time.Minute); st != claimNew {
		t.Fatalf("claim after forget %v", st)
	}
}
