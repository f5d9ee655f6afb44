package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestFactoriesGetTheGatewayLogger: every factory's Section carries the
// gateway's logger with the component's kind and name attached.
func TestFactoriesGetTheGatewayLogger(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	reg := NewRegistry()
	logAt := func(spec Section, msg string) { spec.Logger().Warn(msg) }
	if err := reg.AddConnector("c", func(name string, spec Section) (DeviceConnector, error) {
		logAt(spec, "from connector")
		return &testConnector{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddSink("s", func(name string, spec Section) (Sink, error) {
		logAt(spec, "from sink")
		return newCollectSink(), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddCodec("k", func(name string, spec Section) (Codec, error) {
		logAt(spec, "from codec")
		return f64Codec, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddStore("st", func(spec Section) (Store, error) {
		logAt(spec, "from store")
		return newMemStore(), nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`
codecs: [{name: num, k: {}}]
connectors: [{name: plc, c: {}}]
sinks: [{name: cloud, s: {}}]
store: {st: {}}
`), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(WithLogger(log), WithRegistry(reg), WithConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"msg":"from connector","connector":"plc"`, `"msg":"from sink","sink":"cloud"`,
		`"msg":"from codec","codec":"num"`, `"msg":"from store","store":"st"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
	if (Section{}).Logger() != slog.Default() {
		t.Error("a Section not from a gateway does not default to slog.Default()")
	}
}
