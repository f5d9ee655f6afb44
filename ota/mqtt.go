package ota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Desired is the document a device-management service publishes, retained,
// to <prefix>/<gateway>/desired (one gateway) or
// <prefix>/group/<group>/desired (a fleet group): the version to run and
// where to get it, a URL or the bundle itself (base64, for small ones).
type Desired struct {
	Version uint64 `json:"version"`
	URL     string `json:"url,omitempty"`
	Bundle  []byte `json:"bundle,omitempty"`
}

// Reported is the document a gateway publishes, retained, to
// <prefix>/<gateway>/reported after every transition, like a device
// shadow.
type Reported struct {
	Gateway string    `json:"gateway"`
	State   State     `json:"state"`
	Version uint64    `json:"version"`
	Target  uint64    `json:"target_version,omitempty"`
	Offered uint64    `json:"offered_version,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// MQTTChannel delivers bundles over MQTT (desired documents) and reports
// the Updater's transitions (reported documents). It uses its own client
// session to the broker the upstream uses: the upstream connection is
// itself configured by the bundles it would carry, so a bad bundle that
// breaks it must not cut the channel that reports the rollback.
type MQTTChannel struct {
	// Client is the channel's own client (see NewMQTTChannel).
	Client paho.Client
	// Prefix of the topics. Default "iotgw/ota".
	Prefix  string
	Gateway string
	Groups  []string
	// HTTP fetches desired documents that name a URL; its Dir is
	// required for those (see HTTPSource). Nil: only inline bundles.
	// Set it before Run.
	HTTP *HTTPSource

	mu      sync.Mutex
	desired map[string]Desired // by topic
	handled uint64             // the version last handed to Update
	pending uint64
	notify  chan struct{}
}

// NewMQTTChannel connects a client built from opts (it keeps retrying in
// the background when the broker is away) that subscribes to the desired
// documents of gateway and its groups on every connect. Close
// disconnects it.
func NewMQTTChannel(opts *paho.ClientOptions, prefix, gateway string, groups ...string) (*MQTTChannel, error) {
	if prefix == "" {
		prefix = "iotgw/ota"
	}
	if gateway == "" {
		return nil, errors.New("ota: MQTT channel needs the gateway's name")
	}
	ch := &MQTTChannel{Prefix: prefix, Gateway: gateway, Groups: groups, desired: map[string]Desired{}, notify: make(chan struct{}, 1)}
	prev := opts.OnConnect
	opts.SetOnConnectHandler(func(c paho.Client) {
		filters := map[string]byte{ch.DesiredTopic(): 1}
		for _, g := range groups {
			filters[ch.GroupTopic(g)] = 1
		}
		c.SubscribeMultiple(filters, ch.receive) // retained documents arrive at once
		if prev != nil {
			prev(c)
		}
	})
	opts.SetConnectRetry(true)
	opts.SetAutoReconnect(true)
	ch.Client = paho.NewClient(opts)
	ch.Client.Connect()
	return ch, nil
}

// Close disconnects the client.
func (ch *MQTTChannel) Close() { ch.Client.Disconnect(250) }

// DesiredTopic is this gateway's desired document topic.
func (ch *MQTTChannel) DesiredTopic() string { return ch.Prefix + "/" + ch.Gateway + "/desired" }

// GroupTopic is a fleet group's desired document topic.
func (ch *MQTTChannel) GroupTopic(group string) string {
	return ch.Prefix + "/group/" + group + "/desired"
}

// ReportedTopic is this gateway's reported document topic.
func (ch *MQTTChannel) ReportedTopic() string { return ch.Prefix + "/" + ch.Gateway + "/reported" }

func (ch *MQTTChannel) receive(_ paho.Client, m paho.Message) {
	var d Desired
	if len(m.Payload()) == 0 {
		ch.mu.Lock()
		delete(ch.desired, m.Topic())
		ch.mu.Unlock()
		return
	}
	if err := json.Unmarshal(m.Payload(), &d); err != nil || d.Version == 0 || (d.URL == "") == (len(d.Bundle) == 0) {
		return // not a desired document: ignored
	}
	ch.mu.Lock()
	ch.desired[m.Topic()] = d
	ch.mu.Unlock()
	select {
	case ch.notify <- struct{}{}:
	default:
	}
}

// Notify implements Notifier.
func (ch *MQTTChannel) Notify() <-chan struct{} { return ch.notify }

// want picks the desired document: the gateway's own over its groups'.
func (ch *MQTTChannel) want() (Desired, bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if d, ok := ch.desired[ch.DesiredTopic()]; ok {
		return d, d.Version != ch.handled
	}
	var best Desired
	for _, g := range ch.Groups {
		if d, ok := ch.desired[ch.GroupTopic(g)]; ok && d.Version > best.Version {
			best = d
		}
	}
	return best, best.Version != 0 && best.Version != ch.handled
}

// Fetch implements Source.
func (ch *MQTTChannel) Fetch(ctx context.Context) (io.ReadCloser, error) {
	d, ok := ch.want()
	if !ok {
		return nil, ErrNotModified
	}
	ch.mu.Lock()
	ch.pending = d.Version
	ch.mu.Unlock()
	if len(d.Bundle) > 0 {
		return io.NopCloser(bytes.NewReader(d.Bundle)), nil
	}
	if ch.HTTP == nil {
		return nil, errors.New("ota: desired document names a URL and the channel has no HTTP source")
	}
	if ch.HTTP.URL != d.URL {
		ch.HTTP.URL = d.URL
	}
	return ch.HTTP.Fetch(ctx)
}

// Done implements Source.
func (ch *MQTTChannel) Done(err error) {
	ch.mu.Lock()
	ch.handled = ch.pending
	ch.mu.Unlock()
	if ch.HTTP != nil {
		ch.HTTP.Done(err)
	}
}

// Report publishes s as the reported document (retained, QoS 1) without
// waiting; give it to WithReport.
func (ch *MQTTChannel) Report(s Status) {
	r := Reported{Gateway: ch.Gateway, State: s.State, Version: s.Version, Target: s.TargetVersion, Offered: s.Offered, Reason: s.Reason, Time: s.Since}
	b, _ := json.Marshal(r)
	ch.Client.Publish(ch.ReportedTopic(), 1, true, b)
}
