package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
)

func TestACME(t *testing.T) {
	c, err := newACME("acme", gateway.Section{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in   []byte
		want string
		err  error
	}{
		{[]byte{0xAC, 0x02, 0x01, 0x08, 0xFC, 0x02, 0xFF, 0x9C}, "[{ch1 23 } {ch2 -1 }]", nil},
		{[]byte{0xAC, 0x00}, "[]", nil},
		{[]byte{0xAB, 0x00}, "", codec.ErrSyntax},
		{[]byte{0xAC}, "", codec.ErrSyntax},
		{[]byte{0xAC, 0x02, 0x01, 0x08, 0xFC}, "", codec.ErrShortFrame},
	}
	for _, cs := range cases {
		m := &gateway.Message{}
		err := c.Decode(&gateway.Frame{Payload: cs.in}, m)
		if cs.err != nil {
			if !errors.Is(err, cs.err) {
				t.Errorf("% x: err %v, want %v", cs.in, err, cs.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(m.Points) != cs.want {
			t.Errorf("% x: %v %v, want %s", cs.in, m.Points, err, cs.want)
		}
	}
	if _, err := c.Encode(&gateway.Message{}, nil); !errors.Is(err, gateway.ErrNotSupported) {
		t.Errorf("encode: %v", err)
	}
}

func FuzzACME(f *testing.F) {
	c, _ := newACME("acme", gateway.Section{})
	f.Add([]byte{0xAC, 0x01, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = c.Decode(&gateway.Frame{Payload: b}, &gateway.Message{})
	})
}
