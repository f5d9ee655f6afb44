package codec_test

import (
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
)

func ExampleJSON() {
	c := codec.NewJSON(codec.JSONConfig{Units: map[string]string{"temperature": "C"}})
	m := &gateway.Message{}
	err := c.Decode(&gateway.Frame{Payload: []byte(`{"temperature":21.5,"door":{"open":true}}`)}, m)
	fmt.Println(m.Points, err)
	out, _ := c.Encode(m, nil)
	fmt.Println(string(out))
	// Output:
	// [{temperature 21.5 C} {door.open true }] <nil>
	// {"temperature":21.5,"door.open":true}
}

func ExampleSelect() {
	s, _ := codec.NewSelect([]codec.Rule{
		{Device: "th-*", Codec: codec.NewJSON(codec.JSONConfig{})},
	}, gateway.RawCodec{})
	for _, f := range []gateway.Frame{
		{Device: "th-1", Payload: []byte(`{"t":20}`)},
		{Device: "cam-2", Payload: []byte("jpeg")},
	} {
		m := &gateway.Message{}
		_ = s.Decode(&f, m)
		fmt.Println(f.Device, m.Points)
	}
	// Output:
	// th-1 [{t 20 }]
	// cam-2 [{raw jpeg }]
}

func ExampleRegister() {
	reg := gateway.NewRegistry()
	if err := codec.Register(reg); err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := gateway.ParseConfig([]byte(`
codecs:
  - name: plc
    mapping:
      source: |
        temperature: s16(hr[0]) * 0.1 unit "C"
`), "gw.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
	fmt.Println(err)
	// Output:
	// <nil>
}
