package coap

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/dtlsx"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestLibcoapCoapsPSK: libcoap's OpenSSL and GnuTLS clients reach the
// connector over DTLS with a PSK: POST is delivered and answered 2.04,
// GET discovery answers, a wrong key is refused at the handshake and
// counted, and nothing from it is delivered.
func TestLibcoapCoapsPSK(t *testing.T) {
	const key = "coap-secret-key!"
	var tbl dtlsx.PSKTable
	if err := tbl.Set([]byte("thermo-1"), []byte(key)); err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	c, addr := start(t, col, WithDTLS(dtlsx.WithPSK(&tbl), dtlsx.WithHandshakeTimeout(2*time.Second)))
	base := "coaps://" + addr
	frames := 0
	for _, client := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		t.Run(client, func(t *testing.T) {
			bin := testenv.RequireCommand(t, client)
			run := func(args ...string) (string, error) {
				return conntest.Run(20*time.Second, bin, append([]string{"-B", "5", "-v", "7"}, args...)...)
			}
			out, err := run("-m", "post", "-u", "thermo-1", "-k", key, "-e", client, base+"/devices/thermo-1/temp")
			if err != nil || !strings.Contains(out, "2.04") {
				t.Fatalf("POST: err %v, output:\n%s", err, out)
			}
			frames++
			fs := col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == frames })
			if f := fs[len(fs)-1]; f.Device != "thermo-1" || f.Topic != "temp" || string(f.Payload) != client {
				t.Fatalf("frame %+v", f)
			}
			out, err = run("-m", "get", "-u", "thermo-1", "-k", key, base+"/.well-known/core")
			if err != nil || !strings.Contains(out, `rt="ingest"`) {
				t.Fatalf("GET: err %v, output:\n%s", err, out)
			}
			before := c.Stats().Total.Frames
			out, _ = conntest.Run(20*time.Second, bin, "-B", "3", "-m", "post", "-u", "thermo-1", "-k", "wrong-key-wrong!", "-e", "bad", base+"/devices/thermo-1/temp")
			if strings.Contains(out, "2.04") || c.Stats().Total.Frames != before {
				t.Fatalf("POST with a wrong key was accepted:\n%s", out)
			}
		})
	}
	// A wrong key makes the client's Finished undecryptable: dtlsx counts
	// a decrypt failure and ends the handshake with a fatal alert.
	conntest.Eventually(t, 10*time.Second, "refused handshakes counted", func() bool {
		st, ok := c.DTLSStats()
		return ok && st.DecryptFailures >= 2
	})
	if st, _ := c.DTLSStats(); st.HandshakesPSK < 4 {
		t.Fatalf("dtls stats %+v, want >= 4 PSK handshakes", st)
	}
	if fs := col.Frames(); len(fs) != 2 {
		t.Fatalf("%d frames, want 2", len(fs))
	}
	checkDTLSMetrics(t, c)
}

// TestRegisterDTLSYAML: the dtls: block reads its files at load time and
// names the field of a bad one.
func TestRegisterDTLSYAML(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(psk, []byte("# devices\nthermo-1 636f61702d7365637265742d6b657921\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPSK := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(badPSK, []byte("thermo-1 nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "session.keys")
	if err := os.WriteFile(keys, []byte("1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	openKeys := filepath.Join(dir, "open.keys")
	if err := os.WriteFile(openKeys, []byte("1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openKeys, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "sessions.db")
	ca := newTestCA(t)
	caPEM, certPEM, keyPEM := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw.key")
	srv := ca.issue(t, "gw.test")
	kder, err := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{caPEM: {Type: "CERTIFICATE", Bytes: ca.cert.Raw},
		certPEM: {Type: "CERTIFICATE", Bytes: srv.Certificate[0]}, keyPEM: {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certs := "cert_file: " + certPEM + ", key_file: " + keyPEM
	withPSK := func(extra string) string {
		return "connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', dtls: {psk_file: " + psk + ", " + extra + "}}\n"
	}
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ yaml, wantErr string }{
		{withPSK("identities: {bridge-1: [meter-7, meter-8]}, anonymous: true"), ""},
		{withPSK("identities: {bridge-1: []}"), "connectors[0].coap.dtls: identities: identity \"bridge-1\": no devices"},
		{withPSK("identities: {bridge-1: [a/b]}"), "connectors[0].coap.dtls: identities: identity \"bridge-1\": invalid device \"a/b\""},
		{withPSK("identities: {bridge-1: meter-7}"), "connectors[0].coap.dtls.identities.bridge-1"},
		{withPSK("anonymous: maybe"), "connectors[0].coap.dtls.anonymous"},
		{withPSK("client_ca_file: " + psk), "connectors[0].coap.dtls: client_ca_file: needs cert_file"},
		{withPSK(certs + ", client_ca_file: " + caPEM), ""},
		{withPSK(certs + ", client_ca_file: " + psk), "connectors[0].coap.dtls: client_ca_file: " + psk + " has no PEM certificate"},
		{withPSK(certs + ", client_ca_file: " + filepath.Join(dir, "missing.pem")), "connectors[0].coap.dtls: client_ca_file: open"},
		{withPSK("session_store: " + store + ", session_keys: " + keys + ", session_ttl: 1h"), ""},
		{withPSK("session_store: " + store), "connectors[0].coap.dtls: session_store and session_keys go together"},
		{withPSK("session_keys: " + keys), "connectors[0].coap.dtls: session_store and session_keys go together"},
		{withPSK("session_store: " + store + ", session_keys: " + openKeys), "connectors[0].coap.dtls: session_keys: dtlsx: key ring file " + openKeys + ": mode 0644"},
		{withPSK("session_store: " + store + ", session_keys: " + psk), "connectors[0].coap.dtls: session_keys: dtlsx: key ring file " + psk + ": line 2: key id"},
		{withPSK("session_store: " + filepath.Join(dir, "no", "sessions.db") + ", session_keys: " + keys), "connectors[0].coap.dtls: session_store: directory of"},
		{withPSK("session_ttl: 1h"), "connectors[0].coap.dtls: session_ttl: needs session_store"},
		{withPSK("session_ttl: -1h"), "connectors[0].coap.dtls: session_ttl: must be positive"},
		{withPSK("session_ttl: forever"), "connectors[0].coap.dtls.session_ttl"},
		{withPSK("session_stor: x"), "connectors[0].coap.dtls.session_stor: unknown key"},
		{"connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', dtls: {psk_file: " + psk + ", identity_hint: gw}}\n", ""},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + badPSK + "}}\n", "connectors[0].coap.dtls: psk_file: dtlsx: psk file " + badPSK + ": line 1"},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + filepath.Join(dir, "missing") + "}}\n", "connectors[0].coap.dtls: psk_file"},
		{"connectors:\n  - name: c\n    coap: {dtls: {}}\n", "connectors[0].coap.dtls: want psk_file"},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", cert_file: x}}\n", "cert_file and key_file go together"},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_fle: x}}\n", "connectors[0].coap.dtls.psk_fle: unknown key"},
		{"connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', dtls: {psk_file: " + psk + ", fast_resumption: false}}\n", ""},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", fast_resumption: sometimes}}\n", "connectors[0].coap.dtls.fast_resumption"},
		{"connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', dtls: {psk_file: " + psk + ", own_records: false}}\n", ""},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", own_records: 2}}\n", "connectors[0].coap.dtls.own_records"},
		{"connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', dtls: {psk_file: " + psk + ", max_full_handshakes: 64, handshake_workers: 2}}\n", ""},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", max_full_handshakes: -1}}\n", "connectors[0].coap.dtls: max_full_handshakes: must be positive"},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", handshake_workers: -2}}\n", "connectors[0].coap.dtls: handshake_workers: must be positive"},
		{"connectors:\n  - name: c\n    coap: {dtls: {psk_file: " + psk + ", handshake_workers: many}}\n", "connectors[0].coap.dtls.handshake_workers"},
		{"connectors:\n  - name: c\n    coap: {duplicate_cache: 3}\n", "connectors[0].coap.duplicate_cache"},
		{"connectors:\n  - name: c\n    coap: {fast_path: false}\n", ""},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q:\n err = %v\n want %q", tt.yaml, err, tt.wantErr)
		}
	}
}
