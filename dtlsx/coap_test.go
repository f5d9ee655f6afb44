package dtlsx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
	"github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
)

// serveCoAP runs a go-coap DTLS server on l: GET /temp answers "21.5",
// POST /temp answers with the request body reversed.
func serveCoAP(t *testing.T, l *Listener) {
	t.Helper()
	r := mux.NewRouter()
	_ = r.Handle("/temp", mux.HandlerFunc(func(w mux.ResponseWriter, m *mux.Message) {
		switch m.Code() {
		case codes.GET:
			_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("21.5")))
		case codes.POST:
			body, _ := io.ReadAll(m.Body())
			for i, j := 0, len(body)-1; i < j; i, j = i+1, j-1 {
				body[i], body[j] = body[j], body[i]
			}
			_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader(body))
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	}))
	srv := coapdtls.NewServer(options.WithMux(r))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("coap serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Stop()
		_ = l.Close()
		wg.Wait()
	})
}

func TestLibcoapClientsPSK(t *testing.T) {
	key := "coap-secret-key!"
	var tbl PSKTable
	if err := tbl.Set([]byte("thermo-1"), []byte(key)); err != nil {
		t.Fatal(err)
	}
	l := listen(t, WithPSK(&tbl), WithHandshakeTimeout(2*time.Second))
	serveCoAP(t, l)
	uri := "coaps://" + l.Addr().String() + "/temp"
	for _, client := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		t.Run(client, func(t *testing.T) {
			testenv.RequireCommand(t, client)
			get := startPeer(t, client, "-m", "get", "-u", "thermo-1", "-k", key, "-B", "10", uri)
			if err := get.wait(15 * time.Second); err != nil || !strings.Contains(get.output(), "21.5") {
				t.Fatalf("GET: err %v, output:\n%s", err, get.output())
			}
			post := startPeer(t, client, "-m", "post", "-u", "thermo-1", "-k", key, "-B", "10", "-e", "abc123", uri)
			if err := post.wait(15 * time.Second); err != nil || !strings.Contains(post.output(), "321cba") {
				t.Fatalf("POST: err %v, output:\n%s", err, post.output())
			}
			bad := startPeer(t, client, "-m", "get", "-u", "thermo-1", "-k", "wrong-key-wrong!", "-B", "3", uri)
			_ = bad.wait(15 * time.Second)
			if strings.Contains(bad.output(), "21.5") {
				t.Fatalf("GET with a wrong key got an answer:\n%s", bad.output())
			}
		})
	}
	// A wrong key makes the client's Finished undecryptable: the server
	// answers bad_record_mac and counts a decrypt failure.
	var st Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st = l.Stats(); st.DecryptFailures >= 2 {
			break
		}
	}
	if st.HandshakesPSK < 4 || st.DecryptFailures < 2 {
		t.Fatalf("stats = %+v, want >= 4 PSK handshakes and >= 2 decrypt failures", st)
	}
}

// TestCoAPOverResumedSession: a device resumes its session (the
// listener's own handshake and records) and talks CoAP through go-coap's
// DTLS server, which reads and writes the *dtlsx.Conn like any
// connection.
func TestCoAPOverResumedSession(t *testing.T) {
	key := []byte("0123456789abcdef")
	var tbl PSKTable
	_ = tbl.Set([]byte("sensor-7"), key)
	l := listen(t, WithPSK(&tbl), WithSourceRate(0, 0))
	serveCoAP(t, l)
	store := newMapStore()
	opts := []dtls.ClientOption{dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8), dtls.WithSessionStore(store),
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }), dtls.WithPSKIdentityHint([]byte("sensor-7")),
		dtls.WithConnectionIDGenerator(dtls.RandomCIDGenerator(4))}
	for i, want := range []string{"full", "resumed"} {
		c := pionClient(t, l, nil, opts...)
		cc := coapdtls.Client(c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cc.Post(ctx, "/temp", message.TextPlain, strings.NewReader("abc"))
		cancel()
		if err != nil {
			t.Fatalf("%s: POST: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body())
		if resp.Code() != codes.Changed || string(body) != "cba" {
			t.Fatalf("%s: %v %q", want, resp.Code(), body)
		}
		_ = cc.Close()
		if s := l.Stats(); s.ResumedFast != uint64(i) {
			t.Fatalf("%s: ResumedFast %d, want %d", want, s.ResumedFast, i)
		}
	}
}
