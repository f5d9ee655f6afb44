package opcua_test

import (
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/opcua"
)

func ExampleNew() {
	c, err := opcua.New(opcua.WithServer(opcua.Server{
		Name:     "press1",
		Endpoint: "opc.tcp://10.0.0.7:4840",
		Interval: time.Second, // publishing interval
		Nodes: []opcua.Node{
			{Name: "temperature", ID: "ns=2;s=Demo.Temperature"},
			{Name: "state", Path: "2:Press/2:State"},
		},
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := gateway.New(gateway.WithConnector("ua", c), gateway.WithCodec("opcua", opcua.Codec{}),
		gateway.WithConnectorCodec("ua", "opcua"))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = g // g.Run(ctx) subscribes and keeps the session
	fmt.Println("ok")
	// Output: ok
}

// A frame's payload decodes into typed points with the timestamps and the
// quality tag.
func ExampleCodec() {
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	p, _ := opcua.AppendDataValue(nil, &ua.DataValue{Value: ua.MustVariant(int16(-7)), SourceTimestamp: ts})
	var m gateway.Message
	_ = opcua.Codec{}.Decode(&gateway.Frame{Device: "press1", Topic: "temperature", Payload: p}, &m)
	q, _ := m.Tags.Get("quality")
	ty, _ := m.Tags.Get("type")
	fmt.Println(m.Points[0].Name, m.Points[0].Value, m.Points[0].Value.Kind(), q, ty, m.Time.Format(time.RFC3339))
	// Output: temperature -7 int good Int16 2025-01-02T03:04:05Z
}
