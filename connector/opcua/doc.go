// Package opcua is an OPC UA client connector: it reads variables of OPC
// UA servers by subscription or by polling, and writes them on downlink.
//
// The happy path:
//
//	c, _ := opcua.New(opcua.WithServer(opcua.Server{Name: "press1",
//		Endpoint: "opc.tcp://10.0.0.7:4840",
//		Nodes:    []opcua.Node{{Name: "temperature", ID: "ns=2;s=Demo.Temperature"}}}))
//	g, _ := gateway.New(gateway.WithConnector("ua", c), gateway.WithCodec("opcua", opcua.Codec{}),
//		gateway.WithConnectorCodec("ua", "opcua"), gateway.WithSink("cloud", sink))
//
// In YAML the connector kind and the codec kind are both "opcua" (see
// Config and Register).
//
// # Frame contract
//
// Each value read or notified is one frame: Device is the server's name,
// Topic the node's name, and Payload the DataValue in a compact binary
// form that keeps the OPC UA built-in type, the StatusCode and the source
// and server timestamps (see AppendDataValue and DecodePayload). Codec
// decodes it into points: one per value, named after the node, or
// "<name>[i]" per element of an array. The built-in types map to
// gateway.Value as Boolean -> bool; SByte, Int16, Int32, Int64 -> int;
// Byte, UInt16, UInt32, UInt64 -> uint; Float, Double -> float; String,
// Guid -> string; DateTime -> string (RFC 3339, UTC, nanoseconds);
// ByteString -> bytes. Other types (structures, NodeIds, LocalizedText,
// multi-dimensional arrays) are not delivered; they count as Malformed.
// The message time is the source timestamp (or the server's when the
// source sent none); tags carry quality (good, uncertain or bad, from the
// StatusCode's severity), status (the code when not Good), type and
// server_time.
//
// # Sessions, endpoints and security
//
// Each server has its own session and goroutine. A session starts with
// GetEndpoints on the configured URL; the endpoint with the configured
// security policy (None or Basic256Sha256) and mode (None, Sign,
// SignAndEncrypt) is chosen, and the connection goes to the configured
// URL. With Basic256Sha256 the server's certificate must be in the trust
// list (TrustedCerts: the certificate itself or a CA that signed it;
// ErrUntrustedServer otherwise, naming its thumbprint), and the client
// presents CertFile/KeyFile, generated as a self-signed pair when both are
// missing (see Server.CertFile); the server must trust that certificate,
// or it refuses the channel (ErrCertRejected). Authentication is anonymous
// or by user name and password (ErrAuth when refused). Probe checks a
// configuration once.
//
// Nodes are given by NodeId ("ns=2;s=Demo.Temperature", "i=2258") or by
// browse path from the Objects folder ("2:Demo/2:Temperature"), resolved
// with one TranslateBrowsePathsToNodeIds request per session; a path that
// does not resolve is logged and left out.
//
// # Subscriptions and polling
//
// In Subscribe mode (the default) each session creates one subscription
// with a monitored item per node (sampling interval, queue size and an
// absolute deadband as configured). In Poll mode every node is read each
// interval with as few ReadRequests as the server's MaxNodesPerRead
// allows (Server.MaxNodesPerRead caps it).
//
// The connector keeps the session itself rather than relying on the
// client library's reconnect: a session that is lost (the connection
// closes, the server restarts, a request or the keepalive read times out
// after a network cut) is closed, and after a backoff delay a new session
// is opened and the subscription and its monitored items are created
// again. A session without traffic is checked every keepalive period
// (WithKeepAlive), so a silent network cut is noticed within twice that
// period: in Poll mode by reading the server state, in Subscribe mode by
// asking the server to keep the subscription as it is (ModifySubscription
// with its own parameters), which also notices a subscription the server
// dropped, or whose publishing stopped long enough for the server to
// expire it, while the session lives on.
//
// A re-created subscription first sends every item's current value. One
// that repeats the last value delivered (same value, status and source
// timestamp) is dropped and counted in Duplicates, so a consumer sees no
// duplicates; one that differs counts as a gap (changes during the outage
// may be lost), as does a value the server flags with a queue overflow.
// Stats reports these per server with the session and read counters;
// StatsReport gives the connector counters of /statz.
//
// # Writes
//
// Gateway.Write with this codec writes a message's first point to the node
// named by the message topic. The value is converted to the node's data
// type (read once per session): numbers between integer and float types
// when they fit exactly, text parsed for numbers, Booleans and DateTime
// (RFC 3339). A value that does not fit fails with ErrTypeMismatch before
// anything is sent; the server's BadTypeMismatch, BadNotWritable and
// BadUserAccessDenied map to ErrTypeMismatch, ErrNotWritable and
// ErrAccessDenied (the error text names the status).
package opcua
