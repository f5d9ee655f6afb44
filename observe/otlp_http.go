package observe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpHTTPClient is an OTLP/HTTP protobuf client for otlptrace.Exporter.
// It is written here rather than taken from otlptracehttp because that
// package links gRPC (its configuration and the collector service types
// import it), which a firmware-sized gateway must not carry. It makes no
// retries of its own: a request that fails goes to the spool.
type otlpHTTPClient struct {
	url    string
	client *http.Client
	spool  *Spool // nil: a failed upload is the exporter's error

	mu      sync.Mutex
	stopped bool
}

func newOTLPHTTPClient(url string, timeout time.Duration, spool *Spool) *otlpHTTPClient {
	return &otlpHTTPClient{url: url, client: &http.Client{Timeout: timeout}, spool: spool}
}

func (c *otlpHTTPClient) Start(context.Context) error { return nil }

func (c *otlpHTTPClient) Stop(context.Context) error {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.client.CloseIdleConnections()
	return nil
}

// UploadTraces sends rs as one ExportTraceServiceRequest. With a spool, a
// request that fails, and every request while the spool holds older ones
// or data is waiting (the spool's yield), is stored instead.
func (c *otlpHTTPClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	body, err := encodeTraceRequest(rs)
	if err != nil {
		return err
	}
	return c.uploadBody(ctx, body)
}

// uploadBody sends an encoded ExportTraceServiceRequest (see UploadTraces).
func (c *otlpHTTPClient) uploadBody(ctx context.Context, body []byte) error {
	if c.spool == nil {
		return postOTLP(ctx, c.client, c.url, body)
	}
	if !c.spool.Pending() && (c.spool.yield == nil || !c.spool.yield()) {
		if postOTLP(ctx, c.client, c.url, body) == nil {
			return nil
		}
	}
	return c.spool.Put(context.Background(), SignalTraces, body)
}

// encodeTraceRequest is the protobuf encoding of an
// opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest:
// field 1, resource_spans, repeated.
func encodeTraceRequest(rs []*tracepb.ResourceSpans) ([]byte, error) {
	var body []byte
	for _, r := range rs {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("observe: otlp: encode spans: %w", err)
		}
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendBytes(body, b)
	}
	return body, nil
}

// OTLPHTTPSender returns a Spool handler that POSTs a stored body as
// OTLP/HTTP protobuf to url (for example "http://collector:4318/v1/metrics"
// for the metrics side's rollups). timeout bounds one request.
func OTLPHTTPSender(url string, timeout time.Duration) func(context.Context, []byte) error {
	c := &http.Client{Timeout: timeout}
	return func(ctx context.Context, body []byte) error { return postOTLP(ctx, c, url, body) }
}

// postOTLP POSTs an OTLP protobuf body; any answer but 2xx is an error.
func postOTLP(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("observe: otlp: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("observe: otlp: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("observe: otlp: %s answered %s", url, resp.Status)
	}
	return nil
}
