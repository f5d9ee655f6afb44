package coap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/dtlsx"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// dialCoaps opens a go-coap session over a dtlsx client conn (block-wise
// in 64-byte blocks, so a longer body is a Block1 transfer).
func dialCoaps(t *testing.T, addr string, opts ...dtlsx.Option) *udpclient.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dtlsx.Dial(ctx, "udp", addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cc := coapdtls.Client(conn, options.WithBlockwise(true, blockwise.SZX64, 10*time.Second))
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// send POSTs (or PUTs) body to path and returns the answer's code.
func send(t *testing.T, cc *udpclient.Conn, put bool, path, body string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := cc.Post
	if put {
		send = cc.Put
	}
	resp, err := send(ctx, path, message.TextPlain, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.Code()
}

// TestDTLSIdentityIsDevice: over coaps the PSK identity is the device, or
// the devices WithIdentityDevices lists for it; any other device gets
// 4.03, is counted and delivers nothing. Single-datagram POST and PUT,
// Block1 transfers and a resumed session (the listener's own records)
// are all checked.
func TestDTLSIdentityIsDevice(t *testing.T) {
	keys := map[string]string{"sensor-1": "sensor-1-secret!", "sensor-2": "sensor-2-secret!", "bridge-1": "bridge-1-secret!"}
	var tbl dtlsx.PSKTable
	for id, k := range keys {
		if err := tbl.Set([]byte(id), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	col := conntest.NewCollector()
	c, addr := start(t, col, WithDTLS(dtlsx.WithPSK(&tbl)), WithIdentityDevices("bridge-1", "meter-7", "meter-8"))
	// Each device keeps its own sessions, as a real one does.
	caches := map[string]*dtlsx.SessionCache{}
	as := func(id string) *udpclient.Conn {
		if caches[id] == nil {
			cache, err := dtlsx.NewSessionCache()
			if err != nil {
				t.Fatal(err)
			}
			caches[id] = cache
		}
		return dialCoaps(t, addr, dtlsx.WithClientPSK([]byte(id), []byte(keys[id])), dtlsx.WithSessionCache(caches[id]))
	}
	long := strings.Repeat("0123456789", 30) // five Block1 blocks
	sensor1, bridge := as("sensor-1"), as("bridge-1")
	var wantFrames []string
	denied := 0
	for _, tt := range []struct {
		name string
		cc   *udpclient.Conn
		put  bool
		path string
		body string
		want codes.Code
	}{
		{"own device", sensor1, false, "/devices/sensor-1/env", "21.5", codes.Changed},
		{"other device", sensor1, false, "/devices/sensor-2/env", "99", codes.Forbidden},
		{"other device PUT", sensor1, true, "/devices/sensor-2/env", "99", codes.Forbidden},
		{"other device block-wise", sensor1, false, "/devices/sensor-2/log", long, codes.Forbidden},
		{"own device block-wise", sensor1, false, "/devices/sensor-1/log", long, codes.Changed},
		{"listed device", bridge, false, "/devices/meter-7/energy", "5", codes.Changed},
		{"listed identity's own name", bridge, false, "/devices/bridge-1/env", "5", codes.Forbidden},
		{"unlisted device", bridge, true, "/devices/sensor-1/env", "5", codes.Forbidden},
	} {
		if got := send(t, tt.cc, tt.put, tt.path, tt.body); got != tt.want {
			t.Errorf("%s: %s answered %v, want %v", tt.name, tt.path, got, tt.want)
		}
		if tt.want == codes.Changed {
			wantFrames = append(wantFrames, strings.Split(tt.path, "/")[2]+"|"+tt.body)
		} else {
			denied++
		}
	}
	// The same identity on a resumed session (served by dtlsx's own
	// handshake and records) is held to the same rule.
	_ = sensor1.Close()
	resumed := as("sensor-1")
	if got := send(t, resumed, false, "/devices/sensor-2/env", "99"); got != codes.Forbidden {
		t.Errorf("resumed session, other device: %v, want 4.03", got)
	}
	denied++
	if got := send(t, resumed, false, "/devices/sensor-1/env", "22.0"); got != codes.Changed {
		t.Errorf("resumed session, own device: %v, want 2.04", got)
	}
	wantFrames = append(wantFrames, "sensor-1|22.0")
	if st, _ := c.DTLSStats(); st.HandshakesResumed != 1 {
		t.Errorf("dtls stats %+v, want the last session resumed", st)
	}
	fs := col.WaitFor(t, 5*time.Second, "frames", func(fs []gateway.Frame) bool { return len(fs) >= len(wantFrames) })
	var got []string
	for _, f := range fs {
		got = append(got, f.Device+"|"+string(f.Payload))
	}
	if strings.Join(got, ",") != strings.Join(wantFrames, ",") {
		t.Errorf("frames %q, want %q", got, wantFrames)
	}
	if st := c.Stats(); st.Total.Denied != uint64(denied) || st.Total.Errors < uint64(denied) {
		t.Errorf("stats %+v, want %d denied", st.Total, denied)
	}
	if _, ok := c.Stats().Devices["sensor-2"]; ok {
		t.Errorf("a refused request made counters for the device it named")
	}
}

// testCA issues certificates for the certificate-identity tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coap test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDTLSCertificateIdentity: a verified client certificate's subject CN
// is the device.
func TestDTLSCertificateIdentity(t *testing.T) {
	ca := newTestCA(t)
	col := conntest.NewCollector()
	c, addr := start(t, col, WithDTLS(dtlsx.WithCertificate(ca.issue(t, "gw.test")), dtlsx.WithClientCAs(ca.pool)))
	cc := dialCoaps(t, addr, dtlsx.WithCertificate(ca.issue(t, "meter-3")), dtlsx.WithRootCAs(ca.pool), dtlsx.WithServerName("gw.test"))
	if got := send(t, cc, false, "/devices/meter-3/energy", "7"); got != codes.Changed {
		t.Errorf("own device: %v, want 2.04", got)
	}
	if got := send(t, cc, false, "/devices/meter-4/energy", "7"); got != codes.Forbidden {
		t.Errorf("other device: %v, want 4.03", got)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
	if fs := col.Frames(); len(fs) != 1 || fs[0].Device != "meter-3" {
		t.Errorf("frames %+v", fs)
	}
	if st := c.Stats(); st.Total.Denied != 1 {
		t.Errorf("denied %d, want 1", st.Total.Denied)
	}
}

// TestDTLSAnonymousPeer: a peer that completes a certificate handshake
// without a client certificate (possible when the listener also holds
// PSKs) cannot send as any device unless WithAnonymousDTLS allows it.
func TestDTLSAnonymousPeer(t *testing.T) {
	ca := newTestCA(t)
	var tbl dtlsx.PSKTable
	_ = tbl.Set([]byte("sensor-1"), []byte("sensor-1-secret!"))
	for _, anonymous := range []bool{false, true} {
		col := conntest.NewCollector()
		c, addr := start(t, col, WithDTLS(dtlsx.WithCertificate(ca.issue(t, "gw.test")), dtlsx.WithPSK(&tbl)), WithAnonymousDTLS(anonymous))
		cc := dialCoaps(t, addr, dtlsx.WithRootCAs(ca.pool), dtlsx.WithServerName("gw.test"))
		want := codes.Unauthorized
		if anonymous {
			want = codes.Changed
		}
		if got := send(t, cc, false, "/devices/sensor-1/env", "1"); got != want {
			t.Errorf("anonymous %v: %v, want %v", anonymous, got, want)
		}
		if d := c.Stats().Total.Denied; d != map[bool]uint64{false: 1, true: 0}[anonymous] {
			t.Errorf("anonymous %v: %d denied", anonymous, d)
		}
	}
}

// TestIdentityDevicesNeedDTLS: plain UDP authenticates nobody, so an
// identity map there is a configuration error, not a silent no-op.
func TestIdentityDevicesNeedDTLS(t *testing.T) {
	if _, err := New(WithIdentityDevices("bridge-1", "meter-7")); err == nil || !strings.Contains(err.Error(), "need WithDTLS") {
		t.Fatalf("err = %v", err)
	}
	ring, err := dtlsx.NewKeyRing(1, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(WithDTLSSessionStore(filepath.Join(t.TempDir(), "s.db"), ring)); err == nil || !strings.Contains(err.Error(), "needs WithDTLS") {
		t.Fatalf("session store without DTLS: err = %v", err)
	}
	for _, o := range []Option{WithIdentityDevices("", "a"), WithIdentityDevices("a"), WithIdentityDevices("a", "b/c"), WithIdentityDevices("a", "x+")} {
		if _, err := New(o, WithDTLS()); err == nil {
			t.Errorf("bad identity devices accepted")
		}
	}
}

// TestLibcoapCoapsIdentity: libcoap's client with PSK identity sensor-1
// gets 4.03 for sensor-2's resources, also block-wise, and 2.04 for its
// own.
func TestLibcoapCoapsIdentity(t *testing.T) {
	bin := testenv.RequireCommand(t, "coap-client-openssl")
	const key = "sensor-1-secret!"
	var tbl dtlsx.PSKTable
	_ = tbl.Set([]byte("sensor-1"), []byte(key))
	_ = tbl.Set([]byte("sensor-2"), []byte("sensor-2-secret!"))
	col := conntest.NewCollector()
	c, addr := start(t, col, WithDTLS(dtlsx.WithPSK(&tbl)))
	run := func(args ...string) string {
		out, _ := conntest.Run(20*time.Second, bin, append([]string{"-B", "5", "-u", "sensor-1", "-k", key, "-m", "post"}, args...)...)
		return out
	}
	long := strings.Repeat("x", 300)
	if out := run("-e", "99", "coaps://"+addr+"/devices/sensor-2/env"); !strings.Contains(out, "4.03") {
		t.Errorf("POST as sensor-2: want 4.03, output:\n%s", out)
	}
	if out := run("-b", "64", "-e", long, "coaps://"+addr+"/devices/sensor-2/log"); !strings.Contains(out, "4.03") {
		t.Errorf("block-wise POST as sensor-2: want 4.03, output:\n%s", out)
	}
	if out := run("-v", "7", "-e", "21.5", "coaps://"+addr+"/devices/sensor-1/env"); !strings.Contains(out, "2.04") {
		t.Errorf("POST as sensor-1: want 2.04, output:\n%s", out)
	}
	fs := col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) >= 1 })
	if len(fs) != 1 || fs[0].Device != "sensor-1" || !bytes.Equal(fs[0].Payload, []byte("21.5")) {
		t.Errorf("frames %+v", fs)
	}
	if d := c.Stats().Total.Denied; d != 2 {
		t.Errorf("denied %d, want 2", d)
	}
}
