package resume_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/resume"
)

func ExampleSQLiteStore() {
	dir, _ := os.MkdirTemp("", "resume-example")
	defer os.RemoveAll(dir)
	st, err := resume.OpenSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(dir, "queue.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	ctx := context.Background()
	recs := []gateway.Record{
		{Priority: gateway.PriorityNormal, Sink: "cloud", Payload: []byte("reading")},
		{Priority: gateway.PriorityHigh, Sink: "cloud", Payload: []byte("alarm")},
	}
	_ = st.Append(ctx, recs)  // durable when it returns; held by us
	_ = st.Release(ctx, recs) // queue them for a drain
	next, _ := st.Next(ctx, 10)
	for _, r := range next {
		fmt.Println(string(r.Payload))
	}
	_ = st.Ack(ctx, next[0].Seq, next[1].Seq)
	// Output:
	// alarm
	// reading
}

func ExampleMachine() {
	m := resume.NewMachine(resume.MachineConfig{Backlog: func() bool { return true }})
	for _, ev := range []resume.Event{resume.LinkDown, resume.LinkUp, resume.PublishOK, resume.BacklogEmpty} {
		s, _ := m.Fire(ev)
		fmt.Println(ev, "->", s)
	}
	// Output:
	// link_down -> offline
	// link_up -> recovering
	// publish_ok -> draining
	// backlog_empty -> online
}

func ExampleDeduper() {
	d := resume.NewDeduper(1024)
	id := gateway.NewIDGenerator().Next()
	fmt.Println(d.First(id), d.First(id), d.Duplicates())
	// Output: true false 1
}

func ExampleHeartbeat() {
	b := resume.Heartbeat{Seq: 1, Time: 1700000000000000000}.AppendBinary(nil)
	h, err := resume.ParseHeartbeat(b)
	fmt.Println(len(b), h.Seq, err)
	// Output: 16 1 <nil>
}
