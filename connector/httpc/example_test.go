package httpc_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/httpc"
)

type printUplink struct{}

func (printUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	fmt.Printf("frame from %s on %s: %s\n", f.Device, f.Topic, f.Payload)
	f.Release()
	return nil
}

// The ingest handler mounted in a host's own server.
func ExampleConnector_Handler() {
	c, err := httpc.New(httpc.WithDeviceToken("sensor-1", "s3cret"))
	if err != nil {
		fmt.Println(err)
		return
	}
	h := c.Handler(printUplink{})
	req := httptest.NewRequest(http.MethodPost, "/v1/devices/sensor-1/env", strings.NewReader(`{"t":21.5}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// frame from sensor-1 on env: {"t":21.5}
	// 202
}
