package dtlsx_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/iotgw/gateway/dtlsx"
)

// A gateway accepting PSK devices and a device dialing it.
func Example() {
	var psks dtlsx.PSKTable
	if err := psks.Set([]byte("sensor-1"), []byte("0123456789abcdef")); err != nil {
		log.Fatal(err)
	}
	l, err := dtlsx.Listen("udp", "127.0.0.1:0", dtlsx.WithPSK(&psks))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.CopyN(c, c, 5) // echo one message
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dtlsx.Dial(ctx, "udp", l.Addr().String(), dtlsx.WithClientPSK([]byte("sensor-1"), []byte("0123456789abcdef")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello"))
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	fmt.Println(string(buf[:n]), l.Stats().HandshakesPSK)
	<-done
	// Output: hello 1
}

// A session cache shared through SQLite and sealed with a key ring: a
// restarted gateway, or a second one on the same store, resumes devices
// without full handshakes.
func ExampleNewSessionCache() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dtlsx-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := dtlsx.OpenSQLiteStore(ctx, filepath.Join(dir, "sessions.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ring, err := dtlsx.NewKeyRing(1, make([]byte, 32)) // load the key from your secret store
	if err != nil {
		log.Fatal(err)
	}
	cache, err := dtlsx.NewSessionCache(dtlsx.WithPersistentStore(store, ring), dtlsx.WithTTL(12*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	n, _ := cache.Revoke(ctx, "psk:sensor-lost")
	fmt.Println("revoked", n)
	// Output: revoked 0
}
