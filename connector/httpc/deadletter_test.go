package httpc

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

type chanSink = conntest.RawSink

// TestMalformedPayload400: inside a gateway, a POST whose body the
// connector's codec cannot decode is answered 400 with the codec's error
// (not 202 and then dropped); a good body is accepted.
func TestMalformedPayload400(t *testing.T) {
	c, err := New(WithAddress("127.0.0.1:0"), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	up := make(chanSink, 4)
	g, err := gateway.New(gateway.WithConnector("http", c), gateway.WithCodec("json", conntest.StrictCodec),
		gateway.WithConnectorCodec("http", "json"), gateway.WithSink("up", up), gateway.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for c.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("connector not listening")
		}
		time.Sleep(2 * time.Millisecond)
	}
	url := "http://" + c.Addr().String() + "/v1/devices/s1/env"
	post := func(body []byte) (int, string) {
		resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post([]byte{0x00, 0xff, 0x10}); code != http.StatusBadRequest || !strings.Contains(body, "malformed payload") {
		t.Fatalf("blob: %d %q, want 400 naming the malformed payload", code, body)
	}
	if code, body := post([]byte(`{"t":21.5}`)); code != http.StatusAccepted {
		t.Fatalf("good body: %d %q", code, body)
	}
	select {
	case got := <-up:
		if got != `http|s1|env|{"t":21.5}` {
			t.Fatalf("sink got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("good body not delivered")
	}
	if st := g.Stats(); st.MalformedRefused != 1 || st.FramesIn != 1 {
		t.Fatalf("stats %+v", st)
	}
	if st := c.Stats(); st.Total.Malformed != 1 {
		t.Fatalf("connector stats %+v", st.Total)
	}
}
