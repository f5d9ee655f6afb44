package dtlsx

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func scanner(s string) *bufio.Scanner { return bufio.NewScanner(strings.NewReader(s)) }

func FuzzParseRecord(f *testing.F) {
	f.Add(rawClientHello(nil), 8)
	f.Add(rawClientHello(bytes.Repeat([]byte{1}, 32)), 0)
	f.Add([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0}, 8)
	f.Add([]byte{}, 8)
	f.Fuzz(func(t *testing.T, b []byte, cidLen int) {
		if cidLen < 0 || cidLen > 255 {
			return
		}
		ri, err := parseRecord(b, cidLen)
		if err != nil {
			return
		}
		if ri.hello && (len(ri.sessionID) > 32 || ri.epoch != 0) {
			t.Fatalf("bad hello info %+v", ri)
		}
		if ri.contentType == contentCID && len(ri.cid) != cidLen {
			t.Fatalf("cid %x, want %d bytes", ri.cid, cidLen)
		}
	})
}

func FuzzDecodeSession(f *testing.F) {
	s := testSession(3, "dev")
	f.Add(appendSession(nil, &s))
	f.Add([]byte{1, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(b)
		if err != nil {
			return
		}
		if !bytes.Equal(appendSession(nil, &s), b) {
			t.Fatalf("decode/encode not canonical for %x", b)
		}
	})
}

func FuzzParsePSKTable(f *testing.F) {
	f.Add("sensor-1 00112233\n# x\n")
	f.Add("a b c")
	f.Fuzz(func(t *testing.T, s string) {
		tbl, err := parsePSKTable(scanner(s))
		if err != nil {
			return
		}
		for _, e := range tbl.entries {
			if len(e.identity) == 0 || len(e.key) == 0 {
				t.Fatalf("empty entry from %q", s)
			}
		}
	})
}

func FuzzParseClientHello(f *testing.F) {
	s := testSession(3, "dev")
	f.Add(resumeHello(s, true, 0)[recordHeaderLen:])
	f.Add(rawClientHello(nil)[recordHeaderLen:])
	f.Add(withExtendedMasterSecret(rawClientHello(bytes.Repeat([]byte{9}, 32)))[recordHeaderLen:])
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := parseClientHello(msg)
		if err != nil {
			return
		}
		if len(h.random) != randomLen || len(h.sessionID) > 32 || len(h.suites)%2 != 0 || len(h.suites) == 0 {
			t.Fatalf("bad hello %+v from %x", h, msg)
		}
		if !bytes.Equal(h.msg, msg) {
			t.Fatal("msg is not the parsed message")
		}
		// The answer to whatever parsed must be a well-formed ServerHello.
		sh := appendServerHello(nil, &h, make([]byte, randomLen), 0xc02b, h.ems, h.cid)
		if n := int(sh[1])<<16 | int(sh[2])<<8 | int(sh[3]); n != len(sh)-handshakeHeaderLen {
			t.Fatalf("ServerHello length %d, %d bytes", n, len(sh)-handshakeHeaderLen)
		}
	})
}

// FuzzOpenRecord feeds datagrams to the record splitter and the record
// opener of the listener's resumption path: garbage is refused, never a
// panic, and only what the key sealed opens.
func FuzzOpenRecord(f *testing.F) {
	suite, _ := fastSuiteFor(0xc02b)
	keys, err := deriveKeys(suite, suite.newPRF(make([]byte, masterSecretLen)), make([]byte, randomLen), make([]byte, randomLen))
	if err != nil {
		f.Fatal(err)
	}
	client := &recordKeys{suite: suite, seal: keys.open, open: keys.seal, sealIV: keys.openIV, openIV: keys.sealIV}
	f.Add(client.appendSealed(nil, contentHandshake, 1, 0, nil, []byte("finished")), 0)
	f.Add(client.appendSealed(nil, contentApplicationData, 1, 5, []byte{1, 2, 3, 4}, []byte("data")), 4)
	f.Add([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0, 0}, 4)
	f.Fuzz(func(t *testing.T, b []byte, cidLen int) {
		if cidLen < 0 || cidLen > 255 {
			return
		}
		for len(b) > 0 {
			rec, rest, err := splitRecord(b, cidLen)
			if err != nil {
				return
			}
			if len(rec) == 0 || len(rec)+len(rest) != len(b) {
				t.Fatalf("split %d + %d of %d bytes", len(rec), len(rest), len(b))
			}
			_, _, _, _ = keys.openRecord(rec, cidLen)
			b = rest
		}
	})
}
