package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// pki is a throwaway CA with a server and a device certificate, written
// as PEM files for mosquitto_pub.
type pki struct {
	dir                 string
	caFile              string
	devCert, devKey     string
	rogueCert, rogueKey string
	server              tls.Certificate
	pool                *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test device CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)

	issue := func(serial int64, cn string, server bool, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		if signer == nil {
			signer, signerKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &k.PublicKey, signerKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := issue(2, "gateway", true, ca, caKey)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	devDER, devKey := issue(3, "meter-42", false, ca, caKey)
	p.devCert = p.write(t, "dev.pem", "CERTIFICATE", devDER)
	p.devKey = p.writeKey(t, "dev.key", devKey)
	rogueDER, rogueKey := issue(4, "meter-42", false, nil, nil) // self-signed, same name
	p.rogueCert = p.write(t, "rogue.pem", "CERTIFICATE", rogueDER)
	p.rogueKey = p.writeKey(t, "rogue.key", rogueKey)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) writeKey(t *testing.T, name string, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, "EC PRIVATE KEY", der)
}

func TestListenerClientCertificates(t *testing.T) {
	p := newPKI(t)
	col := conntest.NewCollector()
	_, h, port := startListener(t, col, WithClientCerts(&tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}))
	base := []string{"-h", h, "-p", port, "--cafile", p.caFile, "-q", "1"}
	if out, err := mosq(t, "mosquitto_pub", append(base, "--cert", p.devCert, "--key", p.devKey,
		"-t", "devices/meter-42/energy", "-m", "1234")...); err != nil {
		t.Fatalf("device with a CA-signed certificate: %v %s", err, out)
	}
	fs := col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
	if fs[0].Device != "meter-42" || string(fs[0].Payload) != "1234" {
		t.Fatalf("frame %+v", fs[0])
	}
	// The certificate's name grants only its own topics.
	if out, err := mosq(t, "mosquitto_pub", append(base, "--cert", p.devCert, "--key", p.devKey,
		"-t", "devices/meter-43/energy", "-m", "1")...); err == nil {
		t.Errorf("publish outside the certificate's topics accepted: %s", out)
	}
	// A self-signed certificate with the same name is refused at TLS.
	if out, err := mosq(t, "mosquitto_pub", append(base, "--cert", p.rogueCert, "--key", p.rogueKey,
		"-t", "devices/meter-42/energy", "-m", "evil")...); err == nil {
		t.Errorf("self-signed device certificate accepted: %s", out)
	}
	// No certificate at all.
	if out, err := mosq(t, "mosquitto_pub", append(base, "-t", "devices/meter-42/energy", "-m", "anon")...); err == nil {
		t.Errorf("device without a certificate accepted: %s", out)
	}
	time.Sleep(100 * time.Millisecond)
	if n := col.Len(); n != 1 {
		t.Fatalf("%d frames, want only the authorised one", n)
	}
}
