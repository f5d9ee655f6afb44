package ota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestHTTPSource serves a bundle with the standard library's server
// (ETag, Range, If-Range, If-None-Match), cuts the first download in the
// middle, and checks that the next fetch resumes with a Range request,
// the bundle installs, and the one after costs a 304.
func TestHTTPSource(t *testing.T) {
	k := newKeyring(t, "alice")
	files := map[string]string{ConfigFile: goodCfg + "# " + string(bytes.Repeat([]byte("x"), 8000)) + "\n"}
	body := bundle(t, manifest(1, files), files, k.skeys...)
	var requests atomic.Int32
	var sawRange atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if r.Header.Get("Range") != "" {
			sawRange.Store(r.Header.Get("Range"))
		}
		w.Header().Set("ETag", `"v1"`)
		if n == 1 { // cut the first download halfway
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "bundle.otb", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	dir := t.TempDir()
	src := &HTTPSource{URL: srv.URL, Dir: filepath.Join(dir, "download")}
	if _, err := src.Fetch(context.Background()); err == nil {
		t.Fatal("cut download succeeded")
	}
	u := newTestUpdater(t, filepath.Join(dir, "state"), k.trust(1), &fakeApplier{})
	rc, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sawRange.Load().(string); got != "bytes="+strconv.Itoa(len(body)/2)+"-" || src.Resumed() != 1 {
		t.Fatalf("resumed with Range %q (%d)", got, src.Resumed())
	}
	err = u.Update(context.Background(), rc)
	rc.Close()
	src.Done(err)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(context.Background()); !errors.Is(err, ErrNotModified) {
		t.Fatalf("third fetch: %v", err)
	}
	// A size limit refuses before writing the whole body.
	small := &HTTPSource{URL: srv.URL, Dir: filepath.Join(dir, "small"), MaxSize: 1024}
	if _, err := small.Fetch(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "small", partFile)); !os.IsNotExist(err) {
		t.Fatalf("partial download of a refused bundle kept: %v", err)
	}
}

func TestDirSourceAndRun(t *testing.T) {
	k := newKeyring(t, "alice")
	drop := t.TempDir()
	v1 := map[string]string{ConfigFile: "connectors: [] # 1\n"}
	v2 := map[string]string{ConfigFile: "connectors: [] # 2\n"}
	os.WriteFile(filepath.Join(drop, "a-v1.otb"), bundle(t, manifest(1, v1), v1, k.skeys...), 0o644)
	os.WriteFile(filepath.Join(drop, "b-v2.otb"), bundle(t, manifest(2, v2), v2, k.skeys...), 0o644)
	os.WriteFile(filepath.Join(drop, "notes.txt"), []byte("ignored"), 0o644)
	before := snapshot(t, drop)
	u := newTestUpdater(t, t.TempDir(), k.trust(1), &fakeApplier{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx, 10*time.Millisecond, &DirSource{Dir: drop}) }()
	waitFor(t, func() bool { s := u.Status(); return s.Version == 2 && s.State == Committed })
	cancel()
	<-done
	if s := u.Stats(); s.Committed != 2 || len(s.Rejected) != 0 {
		t.Fatalf("stats %+v (each bundle installs once)", s)
	}
	after := snapshot(t, drop)
	if len(before) != len(after) {
		t.Fatal("the drop directory changed")
	}
}

// TestMQTTChannel delivers bundles over a real mosquitto: an inline bundle
// in the group's retained desired document, then the gateway's own one;
// the gateway publishes a reported document after every transition.
func TestMQTTChannel(t *testing.T) {
	b := startBroker(t)
	k := newKeyring(t, "alice")
	client := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID(id).
			SetUsername(brokerUser).SetPassword(brokerPass).SetAutoReconnect(true))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(50) })
		return c
	}
	ops := client("fleet-manager")
	var mu sync.Mutex
	var reported []Reported
	ops.Subscribe("iotgw/ota/+/reported", 1, func(_ paho.Client, m paho.Message) {
		var r Reported
		if json.Unmarshal(m.Payload(), &r) == nil {
			mu.Lock()
			reported = append(reported, r)
			mu.Unlock()
		}
	}).Wait()
	publish := func(topic string, d Desired) {
		p, _ := json.Marshal(d)
		if tok := ops.Publish(topic, 1, true, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	v1 := map[string]string{ConfigFile: "connectors: [] # 1\n"}
	publish("iotgw/ota/group/line-3/desired", Desired{Version: 1, Bundle: bundle(t, manifest(1, v1), v1, k.skeys...)})

	ch, err := NewMQTTChannel(paho.NewClientOptions().AddBroker("tcp://"+b.addr).SetClientID("gw-7-ota").
		SetUsername(brokerUser).SetPassword(brokerPass), "", "gw-7", "line-3")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	// A desired document may name a URL instead of carrying the bundle.
	v3 := map[string]string{ConfigFile: "connectors: [] # 3\n"}
	body := bundle(t, manifest(3, v3), v3, k.skeys...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v3"`)
		http.ServeContent(w, r, "v3.otb", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	ch.HTTP = &HTTPSource{Dir: t.TempDir()}
	u := newTestUpdater(t, t.TempDir(), k.trust(1), &fakeApplier{}, WithReport(ch.Report))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx, time.Hour, ch) }() // only notifications wake it
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return u.Status().Version == 1 && u.Status().State == Committed })
	v2 := map[string]string{ConfigFile: "connectors: [] # 2\n"}
	publish(ch.DesiredTopic(), Desired{Version: 2, Bundle: bundle(t, manifest(2, v2), v2, k.skeys...)})
	waitFor(t, func() bool { return u.Status().Version == 2 && u.Status().State == Committed })
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := len(reported)
		return n > 0 && reported[n-1].Version == 2 && reported[n-1].State == Committed
	})
	publish(ch.DesiredTopic(), Desired{Version: 3, URL: srv.URL + "/v3.otb"})
	waitFor(t, func() bool { return u.Status().Version == 3 && u.Status().State == Committed })
	mu.Lock()
	defer mu.Unlock()
	var states []State
	for _, r := range reported {
		if r.Gateway != "gw-7" {
			t.Fatalf("reported %+v", r)
		}
		states = append(states, r.State)
	}
	if len(states) < 12 {
		t.Fatalf("reported %v, want every transition of two updates", states)
	}
}
