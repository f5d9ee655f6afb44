package resume

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// TestNextSkipsHeldRecords: records held by the caller (in edge mode,
// every frame the gateway is processing) are skipped without reading
// them, so a Next that finds nothing due costs the same however many are
// held.
func TestNextSkipsHeldRecords(t *testing.T) {
	s, _ := openTestStore(t, nil)
	ctx := context.Background()
	// A record waiting for its retry keeps the scan from starting after
	// the held records behind it.
	later := []gateway.Record{{Priority: gateway.PriorityNormal, Payload: []byte("retry later")}}
	if err := s.Append(ctx, later); err != nil {
		t.Fatal(err)
	}
	later[0].Attempts, later[0].NextTry = 1, time.Now().Add(time.Hour)
	if err := s.Release(ctx, later); err != nil {
		t.Fatal(err)
	}
	recs := make([]gateway.Record, 2000)
	for i := range recs {
		recs[i] = gateway.Record{Priority: gateway.PriorityNormal, Payload: bytes.Repeat([]byte{byte(i)}, 256)}
	}
	if err := s.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		if got, err := s.Next(ctx, 64); err != nil || len(got) != 0 {
			t.Fatalf("Next over held records: %d, %v", len(got), err)
		}
	})
	t.Logf("%.0f allocations per Next over %d held records", allocs, len(recs))
	if allocs > 3*float64(len(recs)) {
		t.Fatalf("Next over %d held records made %.0f allocations: it reads their payloads", len(recs), allocs)
	}
	// Released, they come back, with their contents.
	if err := s.Release(ctx, recs[:3]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Next(ctx, 64)
	if err != nil || len(got) != 3 {
		t.Fatalf("after release: %d records, %v", len(got), err)
	}
	for i, r := range got {
		if r.Seq != recs[i].Seq || !bytes.Equal(r.Payload, recs[i].Payload) {
			t.Fatalf("record %d: seq %d, payload %x...", i, r.Seq, r.Payload[:4])
		}
	}
}

// TestAppendManyRoundTrip: records appended in several calls that share a
// commit (full and partial INSERT statements, shared and distinct enqueue
// times) read back exactly.
func TestAppendManyRoundTrip(t *testing.T) {
	s, _ := openTestStore(t, nil)
	ctx := context.Background()
	var all []gateway.Record
	base := time.Unix(1_700_000_000, 0)
	for call := range 5 {
		recs := make([]gateway.Record, 13*call+1) // 1, 14, 27, 40 (a full statement and a rest), 53
		for i := range recs {
			recs[i] = gateway.Record{Priority: gateway.PriorityNormal, Sink: fmt.Sprint("s", call),
				Payload: []byte(fmt.Sprint("p", call, "-", i)), Attempts: uint32(i % 3),
				Enqueued: base.Add(time.Duration(call*1000+i%2) * time.Second)}
			recs[i].ID[0], recs[i].ID[15] = byte(call), byte(i)
		}
		if err := s.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	if err := s.Release(ctx, all); err != nil {
		t.Fatal(err)
	}
	got, err := s.Next(ctx, 1000)
	if err != nil || len(got) != len(all) {
		t.Fatalf("%d records back, want %d (%v)", len(got), len(all), err)
	}
	for i, r := range got {
		w := all[i]
		if r.Seq != w.Seq || r.ID != w.ID || r.Sink != w.Sink || !bytes.Equal(r.Payload, w.Payload) ||
			r.Attempts != w.Attempts || !r.Enqueued.Equal(w.Enqueued) {
			t.Fatalf("record %d: got %+v, want %+v", i, r, w)
		}
	}
}
