package dtlsx

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// mapStore is the simplest dtls.SessionStore, as a stock pion user would
// write it: a map under a mutex.
type mapStore struct {
	mu sync.Mutex
	m  map[string]dtls.Session
}

func newMapStore() *mapStore { return &mapStore{m: make(map[string]dtls.Session)} }

func (s *mapStore) Set(k []byte, v dtls.Session) error {
	s.mu.Lock()
	s.m[string(k)] = v
	s.mu.Unlock()
	return nil
}

func (s *mapStore) Get(k []byte) (dtls.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[string(k)], nil
}

func (s *mapStore) Del(k []byte) error {
	s.mu.Lock()
	delete(s.m, string(k))
	s.mu.Unlock()
	return nil
}

// acceptAndClose accepts until ln closes, completes each handshake and
// closes the connection, then signals on the returned channel (buffered).
// The returned func stops it and waits.
func acceptAndClose(ln net.Listener) (func(), <-chan struct{}) {
	served := make(chan struct{}, 1<<16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if h, ok := c.(interface{ HandshakeContext(context.Context) error }); ok {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_ = h.HandshakeContext(ctx)
					cancel()
				}
				// Tell the client the server is done, then close after the
				// client does (its close_notify ends the read).
				_, _ = c.Write([]byte{1})
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(make([]byte, 16))
				_ = c.Close()
				served <- struct{}{}
			}()
		}
	}()
	return func() { _ = ln.Close(); wg.Wait() }, served
}

type benchServer struct {
	name  string
	start func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener
	// processOnly servers run only in BenchmarkHandshakeServerProcess.
	processOnly bool
}

var benchServers = []benchServer{
	{name: "stock-pion", start: func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener {
		opts := []dtls.ServerOption{dtls.WithSessionStore(newMapStore()), dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret)}
		if psk != nil {
			opts = append(opts, dtls.WithPSK(psk.PSK), dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8))
		} else {
			opts = append(opts, dtls.WithCertificates(cert), dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
		}
		ln, err := dtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return ln
	}},
	{name: "dtlsx", start: func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener {
		return startDtlsx(b, cert, psk)
	}},
	// The listener's own resumption, then pion's record layer (a pion
	// Conn built from the imported state).
	{name: "dtlsx-pionrecords", start: func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener {
		return startDtlsx(b, cert, psk, WithOwnRecords(false))
	}},
	// Resumptions through pion's handshake instead of the listener's own.
	{name: "dtlsx-pionresume", start: func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener {
		return startDtlsx(b, cert, psk, WithFastResumption(false))
	}},
	// Every core may run handshake steps: what the handshake workers'
	// default (GOMAXPROCS-1) costs in throughput.
	{name: "dtlsx-allcores", processOnly: true, start: func(b testing.TB, cert tls.Certificate, psk PSKProvider) net.Listener {
		return startDtlsx(b, cert, psk, WithHandshakeWorkers(runtime.GOMAXPROCS(0)))
	}},
}

func startDtlsx(b testing.TB, cert tls.Certificate, psk PSKProvider, extra ...Option) net.Listener {
	opts := append([]Option{WithSourceRate(0, 0)}, extra...)
	if psk != nil {
		opts = append(opts, WithPSK(psk), WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8))
	} else {
		opts = append(opts, WithCertificate(cert), WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
	}
	l, err := Listen("udp", "127.0.0.1:0", opts...)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// benchClientOptions is the stock pion client of the handshake benchmarks;
// for "resumed" it keeps one session store across its dials.
func benchClientOptions(kind string) []dtls.ClientOption {
	copts := []dtls.ClientOption{dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret)}
	if kind == "psk" {
		copts = append(copts, dtls.WithPSK(func([]byte) ([]byte, error) { return []byte("0123456789abcdef"), nil }),
			dtls.WithPSKIdentityHint([]byte("bench")), dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8))
	} else {
		copts = append(copts, dtls.WithInsecureSkipVerify(true),
			dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
	}
	if kind == "resumed" {
		copts = append(copts, dtls.WithSessionStore(newMapStore()))
	}
	return copts
}

// benchDial runs one client handshake, waits for the server's one-byte
// confirmation and closes.
func benchDial(raddr *net.UDPAddr, copts []dtls.ClientOption) error {
	c, err := dtls.DialWithOptions("udp", raddr, copts...)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 16)); err != nil {
		return fmt.Errorf("server did not confirm: %w", err)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshake runs one handshake at a time, client and server in
// this process over loopback, against stock pion and against dtlsx with
// the same pion client. cpu-us/hs is the process CPU (both sides). The
// client skips certificate verification: pion's client re-verifies the
// cached chain twice per resumption, which would otherwise be most of the
// CPU measured (see BENCHMARKS.md) and says nothing about the gateway.
func BenchmarkHandshake(b *testing.B) {
	pki := newPKI(b)
	var tbl PSKTable
	_ = tbl.Set([]byte("bench"), []byte("0123456789abcdef"))
	for _, kind := range []string{"full", "resumed", "psk"} {
		for _, srv := range benchServers {
			if srv.processOnly {
				continue
			}
			b.Run(kind+"/"+srv.name, func(b *testing.B) {
				var psk PSKProvider
				if kind == "psk" {
					psk = &tbl
				}
				// Goroutines inherit pprof labels: side=server marks the
				// listener's work in a -cpuprofile, the rest is the client.
				var ln net.Listener
				var stop func()
				var served <-chan struct{}
				pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) {
					ln = srv.start(b, pki.server, psk)
					stop, served = acceptAndClose(ln)
				})
				defer stop()
				raddr := ln.Addr().(*net.UDPAddr)
				copts := benchClientOptions(kind)
				i := 0
				handshake := func() {
					i++
					if err := benchDial(raddr, copts); err != nil {
						if l, ok := ln.(*Listener); ok {
							b.Fatalf("handshake %d: %v; server %+v", i, err, l.Stats())
						}
						b.Fatalf("handshake %d: %v", i, err)
					}
					// Wait for the server side too, so the next client never
					// meets a half-closed association at a reused port (stock
					// pion would misroute it).
					select {
					case <-served:
					case <-time.After(5 * time.Second):
						if l, ok := ln.(*Listener); ok {
							b.Fatalf("server never finished: %+v", l.Stats())
						}
						b.Fatal("server never finished")
					}
				}
				handshake() // prime the session for "resumed"
				b.ReportAllocs()
				b.ResetTimer()
				cpu0, t0 := cpuTime(), time.Now()
				for n := 0; n < b.N; n++ {
					handshake()
				}
				el, cpu := time.Since(t0), cpuTime()-cpu0
				b.ReportMetric(float64(b.N)/el.Seconds(), "hs/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/hs")
				if l, ok := ln.(*Listener); ok && kind == "resumed" {
					// The server counts a moment after the client returns.
					deadline := time.Now().Add(2 * time.Second)
					for l.Stats().HandshakesResumed < uint64(b.N) && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					if st := l.Stats(); st.HandshakesResumed < uint64(b.N) {
						b.Fatalf("only %d of %d handshakes resumed", st.HandshakesResumed, b.N)
					}
				}
			})
		}
	}
}

// BenchmarkRecordEcho sends one 64-byte record and reads its echo over an
// established session: allocations per round trip (both sides, so four
// record reads/writes) with stock pion's listener and with dtlsx's routing.
func BenchmarkRecordEcho(b *testing.B) {
	pki := newPKI(b)
	for _, srv := range benchServers {
		if srv.processOnly {
			continue
		}
		b.Run(srv.name, func(b *testing.B) {
			ln := srv.start(b, pki.server, nil)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				echoRecords(c)
			}()
			defer func() { _ = ln.Close(); wg.Wait() }()
			c, err := dtls.DialWithOptions("udp", ln.Addr().(*net.UDPAddr), dtls.WithInsecureSkipVerify(true),
				dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 64)
			buf := make([]byte, 2048)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResumeImport is the price of handing a resumption the listener
// negotiated to pion: gob-encoding the state and pion's
// State.UnmarshalBinary, which decodes it with a new gob decoder (type
// description included) and derives the record keys again.
func BenchmarkResumeImport(b *testing.B) {
	enc, err := newStateEncoder()
	if err != nil {
		b.Fatal(err)
	}
	f := &fastResume{
		a:       &association{l: &Listener{stateEncoder: enc}},
		session: dtls.Session{ID: make([]byte, 32), Secret: make([]byte, masterSecretLen), CipherSuiteID: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		seq1:    1,
	}
	f.hello.random = make([]byte, randomLen)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := f.state(0); err != nil {
			b.Fatal(err)
		}
	}
}
