package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthEndpoints(t *testing.T) {
	conn := &testConnector{}
	conn.failFirst.Store(1 << 30) // never comes up until we say so
	sink := newCollectSink()
	g, err := New(WithLogger(quietLogger()), WithConnector("plc", conn), WithSink("up", sink), WithHealthAddress("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "health server", 2*time.Second, func() bool { return g.HealthAddr() != "" })
	base := "http://" + g.HealthAddr()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "connector plc") {
		t.Fatalf("/readyz with a down connector = %d %q", code, body)
	}
	conn.failFirst.Store(0)
	waitFor(t, "ready", 5*time.Second, func() bool { c, _ := get(t, base+"/readyz"); return c == 200 })
	sink.fail.Store(true)
	if err := conn.send(t, "d", "t", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "not ready on failing sink", 3*time.Second, func() bool {
		c, b := get(t, base+"/readyz")
		return c == 503 && strings.Contains(b, "sink up")
	})
	_, body = get(t, base+"/statz")
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/statz: %v in %q", err, body)
	}
	if st.FramesIn != 1 || len(st.Connectors) != 1 || !st.Connectors[0].Up {
		t.Fatalf("/statz = %+v", st)
	}
}
