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
