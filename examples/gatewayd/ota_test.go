package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/ota"
)

const otaBase = `gateway: {name: gw-7}
codecs: [{name: sim, sim: {}}]
connectors:
  - {name: field, codec: sim, sim: {devices: 2, interval: 20ms}}
sinks:
  - {name: local, localbroker: {address: "127.0.0.1:0", topic_prefix: %s}}
`

// TestOTADirectory runs the daemon's registry with an ota: file whose
// source is a directory: a valid bundle is applied through the reload
// path and committed; one whose configuration does not validate is
// refused in Verifying and changes nothing.
func TestOTADirectory(t *testing.T) {
	dir := t.TempDir()
	drop := filepath.Join(dir, "drop")
	os.Mkdir(drop, 0o755)
	skey, vkey, err := ota.GenerateKey("ops")
	if err != nil {
		t.Fatal(err)
	}
	otaFile := filepath.Join(dir, "ota.yaml")
	os.WriteFile(otaFile, []byte(fmt.Sprintf("ota:\n  dir: %s\n  trusted_keys: [%q]\n  probation: 300ms\n  check_interval: 50ms\n  poll: 20ms\n  sources: {dir: %s}\n",
		filepath.Join(dir, "state"), vkey, drop)), 0o644)
	base := filepath.Join(dir, "gw.yaml")
	os.WriteFile(base, []byte(fmt.Sprintf(otaBase, "gw")), 0o644)

	log := slog.New(slog.DiscardHandler)
	reg, _ := registry(t, log)
	o, err := otaOptions(otaFile, base, log)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.WithLogger(log), gateway.WithRegistry(reg), gateway.WithConfig(o.run))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); wg.Wait(); <-done }()
	if err := o.start(ctx, g, &wg); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gateway ready", func() bool { return g.Ready(t.Context()) == nil })

	put := func(name string, version uint64, cfg string) {
		m := &ota.Manifest{Name: "gw", Version: version, Created: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
			Files: []ota.File{ota.FileOf(ota.ConfigFile, []byte(cfg))}}
		signed, err := ota.Sign(m, skey)
		if err != nil {
			t.Fatal(err)
		}
		b := &ota.Bundle{Signed: signed, Files: map[string][]byte{ota.ConfigFile: []byte(cfg)}}
		f, err := os.Create(filepath.Join(drop, name+".tmp"))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Write(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		os.Rename(filepath.Join(drop, name+".tmp"), filepath.Join(drop, name))
	}
	reloads := g.Stats().Reloads
	put("v1.otb", 1, fmt.Sprintf(otaBase, "gw-v1"))
	waitUntil(t, "v1 committed", func() bool { s := o.u.Status(); return s.State == ota.Committed && s.Version == 1 })
	if g.Stats().Reloads != reloads+1 {
		t.Fatalf("reloads %d, want %d", g.Stats().Reloads, reloads+1)
	}
	// An unknown connector kind does not validate: refused in Verifying.
	put("v2.otb", 2, strings.Replace(fmt.Sprintf(otaBase, "gw-v2"), "sim: {devices", "simulated: {devices", 1))
	waitUntil(t, "v2 refused", func() bool { return o.u.Stats().Rejected["invalid_config"] == 1 })
	st := o.u.Status()
	if st.State != ota.Failed || st.Version != 1 || st.Current != "gen-1" || !strings.Contains(st.Reason, "simulated") {
		t.Fatalf("after the invalid bundle: %+v", st)
	}
	if s := g.Stats(); s.Reloads != reloads+1 || s.ReloadErrors != 0 {
		t.Fatalf("the invalid bundle reached the gateway: %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "gen-2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("gen-2 on disk: %v", err)
	}
}
