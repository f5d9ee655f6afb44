package connstats

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestReportBoundsDevicesTroubleFirst(t *testing.T) {
	var tb Table
	for i := 0; i < 10; i++ {
		c := tb.Device(fmt.Sprintf("d%02d", i))
		for j := 0; j <= i; j++ {
			c.Frame(10)
			tb.Total.Frame(10)
		}
	}
	tb.Device("d00").Denied()
	tb.Device("d01").Malformed()
	r := tb.Report(3)
	if len(r.Devices) != 3 || r.DevicesOmitted != 7 {
		t.Fatalf("report has %d devices, %d omitted; want 3 and 7", len(r.Devices), r.DevicesOmitted)
	}
	for _, want := range []string{"d00", "d01", "d09"} { // trouble first, then the busiest
		if _, ok := r.Devices[want]; !ok {
			t.Fatalf("report lacks %s: %v", want, r.Devices)
		}
	}
	if r.Devices["d00"].Denied != 1 {
		t.Fatalf("d00 denied = %d, want 1", r.Devices["d00"].Denied)
	}
	if r := tb.Report(0); r.Devices != nil || r.DevicesOmitted != 10 {
		t.Fatalf("Report(0) = %+v, want no devices and 10 omitted", r)
	}
	b, err := json.Marshal(tb.Report(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"total":{"frames":55,"bytes":550`, `"d01":{"frames":2,"bytes":20,"errors":0,"malformed":1`, `"devices_omitted":9`} {
		if !strings.Contains(string(b), key) {
			t.Fatalf("JSON %s lacks %s", b, key)
		}
	}
}
