package codec

import (
	"encoding/json"
	"sort"
	"testing"

	"github.com/iotgw/gateway"
)

// benchJSON is a typical telemetry object: 10 points, numbers, flags and
// a nested status object.
var benchJSON = []byte(`{"temperature":21.5,"humidity":40.25,"pressure":1013.2,"co2":612,"voc":0.31,` +
	`"battery":3.71,"rssi":-71,"door":{"open":false,"count":1234},"mode":"auto"}`)

const benchJSONPoints = 10

func BenchmarkJSONDecode(b *testing.B) {
	c := NewJSON(JSONConfig{})
	f := &gateway.Frame{Payload: benchJSON}
	m := &gateway.Message{Points: make([]gateway.Point, 0, 16)}
	b.SetBytes(int64(len(benchJSON)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Points = m.Points[:0]
		if err := c.Decode(f, m); err != nil {
			b.Fatal(err)
		}
	}
	if len(m.Points) != benchJSONPoints {
		b.Fatalf("%d points", len(m.Points))
	}
	b.ReportMetric(float64(b.N)*benchJSONPoints/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkStdlibJSONDecode is what a codec built on encoding/json does
// for payloads of unknown shape: unmarshal into a map, then turn it into
// points (flattening the nested object).
func BenchmarkStdlibJSONDecode(b *testing.B) {
	m := &gateway.Message{Points: make([]gateway.Point, 0, 16)}
	b.SetBytes(int64(len(benchJSON)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Points = m.Points[:0]
		var v map[string]any
		if err := json.Unmarshal(benchJSON, &v); err != nil {
			b.Fatal(err)
		}
		stdPoints(m, "", v)
	}
	if len(m.Points) != benchJSONPoints {
		b.Fatalf("%d points", len(m.Points))
	}
	b.ReportMetric(float64(b.N)*benchJSONPoints/b.Elapsed().Seconds(), "points/s")
}

func stdPoints(m *gateway.Message, prefix string, v map[string]any) {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch x := v[k].(type) {
		case float64:
			m.AddPoint(name, gateway.Float(x), "")
		case bool:
			m.AddPoint(name, gateway.Bool(x), "")
		case string:
			m.AddPoint(name, gateway.String(x), "")
		case map[string]any:
			stdPoints(m, name, x)
		}
	}
}

// BenchmarkStdlibJSONStruct is encoding/json's best case: a struct that
// knows the payload's shape at compile time.
func BenchmarkStdlibJSONStruct(b *testing.B) {
	type payload struct {
		Temperature, Humidity, Pressure float64
		CO2                             int64 `json:"co2"`
		VOC, Battery                    float64
		RSSI                            int64 `json:"rssi"`
		Door                            struct {
			Open  bool
			Count int64
		}
		Mode string
	}
	m := &gateway.Message{Points: make([]gateway.Point, 0, 16)}
	b.SetBytes(int64(len(benchJSON)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Points = m.Points[:0]
		var p payload
		if err := json.Unmarshal(benchJSON, &p); err != nil {
			b.Fatal(err)
		}
		m.AddPoint("temperature", gateway.Float(p.Temperature), "")
		m.AddPoint("humidity", gateway.Float(p.Humidity), "")
		m.AddPoint("pressure", gateway.Float(p.Pressure), "")
		m.AddPoint("co2", gateway.Int(p.CO2), "")
		m.AddPoint("voc", gateway.Float(p.VOC), "")
		m.AddPoint("battery", gateway.Float(p.Battery), "")
		m.AddPoint("rssi", gateway.Int(p.RSSI), "")
		m.AddPoint("door.open", gateway.Bool(p.Door.Open), "")
		m.AddPoint("door.count", gateway.Int(p.Door.Count), "")
		m.AddPoint("mode", gateway.String(p.Mode), "")
	}
	b.ReportMetric(float64(b.N)*benchJSONPoints/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkJSONEncode(b *testing.B) {
	c := NewJSON(JSONConfig{})
	m := &gateway.Message{}
	if err := c.Decode(&gateway.Frame{Payload: benchJSON}, m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = c.Encode(m, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*benchJSONPoints/b.Elapsed().Seconds(), "points/s")
}
