package opcua

import (
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

func TestRegisterStrictYAML(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	ok := `connectors:
  - name: ua
    codec: opcua
    opcua:
      timeout: 2s
      keepalive: 3s
      servers:
        - name: press1
          endpoint: opc.tcp://127.0.0.1:4840
          username: gw
          password: secret
          mode: poll
          interval: 500ms
          nodes:
            - {name: temperature, id: "ns=2;s=Demo.Temperature"}
            - {name: pressure, path: "2:Demo/2:Pressure"}
codecs:
  - name: opcua
    opcua: {}
`
	tests := []struct{ yaml, wantErr string }{
		{ok, ""},
		{strings.Replace(ok, "timeout: 2s", "timout: 2s", 1), "connectors[0].opcua.timout: unknown key"},
		{strings.Replace(ok, `id: "ns=2;s=Demo.Temperature"`, `id: "ns=2;q=x"`, 1), "connectors[0].opcua.servers[0].nodes[0].id: opcua: bad node"},
		{strings.Replace(ok, `path: "2:Demo/2:Pressure"`, `path: "2:Demo//x"`, 1), "connectors[0].opcua.servers[0].nodes[1].path: opcua: bad node: browse path"},
		{strings.Replace(ok, `path: "2:Demo/2:Pressure"`, `path: "2:Demo/2:Pressure", id: "i=1"`, 1), "connectors[0].opcua.servers[0].nodes[1]: want exactly one of id and path"},
		{strings.Replace(ok, "mode: poll", "mode: push", 1), `connectors[0].opcua.servers[0].mode: unknown mode "push"`},
		{strings.Replace(ok, "endpoint: opc.tcp://127.0.0.1:4840", "endpoint: http://x", 1), "connectors[0].opcua.servers[0].endpoint: server press1: endpoint"},
		{strings.Replace(ok, "username: gw", "security_policy: Basic128", 1), "connectors[0].opcua.servers[0].security_policy: server press1: security policy"},
		{strings.Replace(ok, "username: gw", "security_policy: Basic256Sha256", 1), "connectors[0].opcua.servers[0].trusted_certs: server press1: policy Basic256Sha256 needs trusted server certificates"},
		{strings.Replace(ok, "username: gw", "security_mode: Sign", 1), "connectors[0].opcua.servers[0].security_mode: server press1: security mode Sign does not go with policy None"},
		{strings.Replace(ok, "name: pressure", "name: temperature", 1), `connectors[0].opcua.servers[0].nodes: server press1: node 1: name "temperature" used twice`},
		{strings.Replace(ok, "opcua: {}", "opcua: {x: 1}", 1), "codecs[0].opcua.x: unknown key"},
		{"connectors:\n  - name: ua\n    opcua: {}\n", "connectors[0].opcua.servers: at least one server"},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("err = %v\n want %q", err, tt.wantErr)
		}
	}
}
