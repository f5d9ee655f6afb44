package opcua

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// loadOrCreateCert returns the client certificate (DER) and key. When
// both files are missing it generates a self-signed pair and writes it.
func loadOrCreateCert(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		if err := generateCert(certFile, keyFile); err != nil {
			return nil, nil, fmt.Errorf("opcua: generate client certificate: %w", err)
		}
	}
	raw, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua: client certificate: %w", err)
	}
	der := raw
	if b, _ := pem.Decode(raw); b != nil {
		der = b.Bytes
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return nil, nil, fmt.Errorf("opcua: client certificate %s: %w", certFile, err)
	}
	kraw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua: client key: %w", err)
	}
	b, _ := pem.Decode(kraw)
	if b == nil {
		return nil, nil, fmt.Errorf("opcua: client key %s: not PEM", keyFile)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			key = rk
		}
	}
	if key == nil {
		return nil, nil, fmt.Errorf("opcua: client key %s: want an RSA key (PKCS#1 or PKCS#8)", keyFile)
	}
	return der, key, nil
}

func generateCert(certFile, keyFile string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	uri, _ := url.Parse("urn:iotgw:gateway:" + host)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "iotgw gateway", Organization: []string{"iotgw"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
		DNSNames:              []string{host, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	for _, f := range []string{certFile, keyFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return err
		}
	}
	kp := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(keyFile, kp, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, der, 0o644)
}

// trustList is the set of server certificates a secured session accepts.
type trustList struct {
	certs []*x509.Certificate
	pool  *x509.CertPool
}

func loadTrustList(paths []string) (*trustList, error) {
	tl := &trustList{pool: x509.NewCertPool()}
	add := func(file string) error {
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		rest, found := raw, false
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			tl.certs, found = append(tl.certs, c), true
			tl.pool.AddCert(c)
		}
		if !found {
			c, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("%s: not a DER or PEM certificate: %w", file, err)
			}
			tl.certs = append(tl.certs, c)
			tl.pool.AddCert(c)
		}
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("opcua: trusted certificates: %w", err)
		}
		if !st.IsDir() {
			if err := add(p); err != nil {
				return nil, fmt.Errorf("opcua: trusted certificates: %w", err)
			}
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("opcua: trusted certificates: %w", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				if err := add(filepath.Join(p, e.Name())); err != nil {
					return nil, fmt.Errorf("opcua: trusted certificates: %w", err)
				}
			}
		}
	}
	return tl, nil
}

// check accepts der when it is in the list or chains to a certificate in
// it (the server's own validity dates and usages are not checked: many
// field devices carry expired self-signed certificates).
func (tl *trustList) check(der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("%w: the endpoint carries no certificate", ErrUntrustedServer)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		// Some servers send a chain: the leaf comes first.
		if cs, err2 := x509.ParseCertificates(der); err2 == nil && len(cs) > 0 {
			c = cs[0]
		} else {
			return fmt.Errorf("%w: certificate does not parse: %v", ErrUntrustedServer, err)
		}
	}
	for _, t := range tl.certs {
		if bytes.Equal(t.Raw, c.Raw) {
			return nil
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: tl.pool, CurrentTime: c.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		return nil
	}
	sum := sha1.Sum(c.Raw)
	return fmt.Errorf("%w: %q (SHA-1 thumbprint %s) is not in trusted_certs", ErrUntrustedServer, c.Subject.String(), hex.EncodeToString(sum[:]))
}
