package dtlsx

import (
	"context"
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
)

// testPKI is a throwaway CA and a server certificate for 127.0.0.1 and
// "gw.test", generated per test run; keys never leave the temp dir.
type testPKI struct {
	caCert  *x509.Certificate
	caKey   *ecdsa.PrivateKey
	pool    *x509.CertPool
	server  tls.Certificate
	dir     string
	caPEM   string // file paths for openssl
	certPEM string
	keyPEM  string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dtlsx test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.caCert)
	p.caPEM = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caPEM, "CERTIFICATE", der)
	p.server = p.issue(t, "gw.test", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	p.certPEM = filepath.Join(p.dir, "server.pem")
	p.keyPEM = filepath.Join(p.dir, "server.key")
	writePEM(t, p.certPEM, "CERTIFICATE", p.server.Certificate[0])
	kder, err := x509.MarshalECPrivateKey(p.server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.keyPEM, "EC PRIVATE KEY", kder)
	return p
}

// issue signs a leaf for name and 127.0.0.1 valid in [from, until).
func (p *testPKI) issue(t testing.TB, name string, from, until time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: from, NotAfter: until,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveEcho accepts connections and echoes every read back until the
// listener closes. The test waits for it at cleanup.
func serveEcho(t testing.TB, l *Listener) {
	t.Helper()
	done := make(chan struct{})
	var conns []net.Conn // owned by the accept loop until done
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go echoRecords(c)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// echoRecords writes every record it reads back to c until c fails. A
// record is at most maxDatagram bytes; io.Copy's 32 KiB buffer per
// connection would be most of what a reconnect storm allocates.
func echoRecords(c net.Conn) {
	buf := make([]byte, maxDatagram)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// echoOnce writes msg on c and expects it back within two seconds.
// acceptAll hands every association l accepts to the returned channel
// (room for 4) until the test ends.
func acceptAll(t testing.TB, l *Listener) <-chan net.Conn {
	accepted := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return accepted
}

func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(buf[:n]) != msg {
		t.Fatalf("echo = %q, want %q", buf[:n], msg)
	}
	_ = c.SetDeadline(time.Time{})
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func listen(t testing.TB, opts ...Option) *Listener {
	t.Helper()
	l, err := Listen("udp", "127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
