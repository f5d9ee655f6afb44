package observe

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// httptestServer serves h on loopback until the test ends and returns its
// /metrics URL.
func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}
