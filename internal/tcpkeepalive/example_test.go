package tcpkeepalive_test

import (
	"fmt"
	"net"

	"github.com/iotgw/gateway/internal/tcpkeepalive"
)

func ExampleConfig() {
	d := net.Dialer{KeepAliveConfig: tcpkeepalive.Config()}
	c := d.KeepAliveConfig
	fmt.Println(c.Enable, c.Idle, c.Interval, c.Count)
	// Output: true 30s 30s 9
}
