// Command heartbeat-responder is the cloud side of the gateway's UDP
// heartbeat probe: it answers every valid 16-byte heartbeat. Run it next to
// the broker the gateways publish to.
//
//	heartbeat-responder -listen :7946
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iotgw/gateway/resume"
)

func main() {
	listen := flag.String("listen", ":7946", "UDP address to answer heartbeats on")
	every := flag.Duration("stats", time.Minute, "how often to log counters (0: never)")
	flag.Parse()
	r, err := resume.ListenHeartbeat(*listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("answering heartbeats on %s", r.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-sig:
			_ = r.Close()
			answered, rejected := r.Stats()
			log.Printf("stopped: %d answered, %d rejected", answered, rejected)
			return
		case <-tick:
			answered, rejected := r.Stats()
			log.Printf("%d answered, %d rejected", answered, rejected)
		}
	}
}
