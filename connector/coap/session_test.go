package coap

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// lockedBuffer collects a child's output for polling.
type lockedBuffer = conntest.Buffer

// sClientHandshake runs openssl s_client over DTLS 1.2 to addr until its
// handshake completes, then closes its stdin so it ends the session
// (writing -sess_out), and returns its output.
func sClientHandshake(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"s_client", "-dtls1_2", "-connect", addr}, args...)...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for !strings.Contains(out.String(), "Cipher is") {
		select {
		case <-done:
			t.Fatalf("s_client %v ended without a handshake:\n%s", args, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = stdin.Close()
	<-done
	return out.String()
}

type nopSink struct{}

func (nopSink) Publish(context.Context, []*gateway.Message) error { return nil }

// runGateway runs a gateway from yaml until the test's cleanup, once its
// connectors are up.
func runGateway(t *testing.T, yaml string) (stop func()) {
	t.Helper()
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte(yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("t", nopSink{}),
		gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && ctx.Err() == nil {
				t.Errorf("gateway: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	conntest.Eventually(t, 10*time.Second, "gateway ready", func() bool { return g.Ready(ctx) == nil })
	return stop
}

// TestDTLSSessionStoreAcrossRestart: with session_store and session_keys
// in the dtls: block, a session openssl made with one gateway is resumed
// ("Reused") by a new gateway built from the same YAML over the same
// files, as after a restart.
func TestDTLSSessionStoreAcrossRestart(t *testing.T) {
	openssl := testenv.RequireCommand(t, "openssl")
	dir := t.TempDir()
	key := []byte("sensor-1-secret!")
	pskFile, keysFile := filepath.Join(dir, "psk.txt"), filepath.Join(dir, "session.keys")
	if err := os.WriteFile(pskFile, []byte("sensor-1 "+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysFile, []byte("1 "+strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store, sess := filepath.Join(dir, "sessions.db"), filepath.Join(dir, "sess.pem")
	psk := []string{"-psk_identity", "sensor-1", "-psk", hex.EncodeToString(key), "-cipher", "PSK-AES128-GCM-SHA256"}
	handshake := func(sessArg string) string {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreeUDPPort(t))
		stop := runGateway(t, fmt.Sprintf(`connectors:
  - name: coaps
    coap:
      address: "%s"
      dtls: {psk_file: %s, session_store: %s, session_keys: %s}
`, addr, pskFile, store, keysFile))
		defer stop()
		return sClientHandshake(t, openssl, addr, append(psk, sessArg, sess)...)
	}
	if out := handshake("-sess_out"); !strings.Contains(out, "New, TLSv1.2") {
		t.Fatalf("first gateway: no new session:\n%s", out)
	}
	if out := handshake("-sess_in"); !strings.Contains(out, "Reused, TLSv1.2") {
		t.Fatalf("restarted gateway did not resume the session:\n%s", out)
	}
}
