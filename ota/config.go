package ota

import (
	"fmt"
	"os"
	"time"

	"github.com/iotgw/gateway"
)

// Config is the ota: YAML block of a host such as gatewayd. Unknown keys
// are errors; errors name the YAML path.
//
//	ota:
//	  dir: /var/lib/gatewayd/ota
//	  trusted_keys: [ "alice+1a2b3c4d+Ab...", "bob+5e6f7a8b+Cd..." ]
//	  threshold: 2
//	  labels: {site: plant-a}
//	  probation: 30s
//	  sources:
//	    http: {url: "https://updates.example.com/line-3.otb"}
//	    dir: /media/usb
//	    mqtt: {broker: "tcp://127.0.0.1:1883", groups: [line-3]}
type Config struct {
	// Dir is the state directory (generations, pointers, state).
	// Required.
	Dir string `yaml:"dir"`
	// TrustedKeys are signed-note verifier keys (otasign keygen prints
	// them). Required.
	TrustedKeys []string `yaml:"trusted_keys"`
	// Threshold is how many of them must sign a bundle. Default 1; more
	// means no single stolen key can push an update.
	Threshold int `yaml:"threshold"`
	// Gateway names this gateway for target selectors and MQTT topics.
	// Default: gateway.name of the configuration.
	Gateway string `yaml:"gateway"`
	// Labels are matched by the manifests' "target label" lines.
	Labels map[string]string `yaml:"labels"`
	// Probation is how long a new generation is watched before it is
	// committed. Default 30s.
	Probation time.Duration `yaml:"probation"`
	// CheckInterval is how often it is checked. Default 500ms.
	CheckInterval time.Duration `yaml:"check_interval"`
	// MaxErrorRatio is the error ratio over frames that counts as
	// degraded (see Counters). Default 0.05.
	MaxErrorRatio float64 `yaml:"max_error_ratio"`
	// ReadyGrace is how long the gateway may stay not ready after an
	// update. Default 3s.
	ReadyGrace time.Duration `yaml:"ready_grace"`
	// MaxBundleSize bounds a bundle in bytes. Default 64 MiB.
	MaxBundleSize int64 `yaml:"max_bundle_size"`
	// Poll is the interval between fetches from the sources. Default 1m
	// (MQTT desired documents are handled as they arrive).
	Poll    time.Duration `yaml:"poll"`
	Sources SourcesConfig `yaml:"sources"`
}

// SourcesConfig lists where bundles come from; any combination.
type SourcesConfig struct {
	HTTP HTTPConfig `yaml:"http"`
	// Dir is a directory of *.otb bundles (removable media).
	Dir  string     `yaml:"dir"`
	MQTT MQTTConfig `yaml:"mqtt"`
}

// HTTPConfig is a bundle URL polled with If-None-Match.
type HTTPConfig struct {
	URL string `yaml:"url"`
	// Timeout of one download. Default 5m.
	Timeout time.Duration `yaml:"timeout"`
}

// MQTTConfig is the desired/reported channel's broker.
type MQTTConfig struct {
	Broker   string   `yaml:"broker"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	ClientID string   `yaml:"client_id"` // default iotgw-ota-<gateway>
	Prefix   string   `yaml:"prefix"`    // default iotgw/ota
	Groups   []string `yaml:"groups"`
}

// LoadConfig reads a YAML file whose top level has an ota: block.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b, path)
}

// ParseConfig parses a YAML document whose top level has an ota: block
// (and nothing else), applies the defaults and checks it.
func ParseConfig(data []byte, file string) (*Config, error) {
	sec, err := gateway.ParseSection(data, file)
	if err != nil {
		return nil, err
	}
	var doc struct {
		OTA gateway.Section `yaml:"ota"`
	}
	if err := sec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc.OTA.IsZero() {
		return nil, sec.Errorf("ota", "no ota: block")
	}
	c := &Config{}
	if err := doc.OTA.Decode(c); err != nil {
		return nil, err
	}
	fail := func(field, format string, args ...any) error { return doc.OTA.Errorf(field, format, args...) }
	if c.Dir == "" {
		return nil, fail("dir", "required")
	}
	if len(c.TrustedKeys) == 0 {
		return nil, fail("trusted_keys", "at least one key is required")
	}
	if c.Threshold == 0 {
		c.Threshold = 1
	}
	if err := (Trust{Keys: c.TrustedKeys, Threshold: c.Threshold}).Check(); err != nil {
		field := "threshold"
		if c.Threshold >= 1 && c.Threshold <= len(c.TrustedKeys) {
			field = "trusted_keys"
		}
		return nil, fail(field, "%v", err)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"probation", &c.Probation, 30 * time.Second}, {"check_interval", &c.CheckInterval, 500 * time.Millisecond},
		{"ready_grace", &c.ReadyGrace, 3 * time.Second}, {"poll", &c.Poll, time.Minute}} {
		if *d.v < 0 {
			return nil, fail(d.name, "must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxErrorRatio < 0 || c.MaxErrorRatio > 1 {
		return nil, fail("max_error_ratio", "must be between 0 and 1")
	}
	if c.MaxBundleSize < 0 {
		return nil, fail("max_bundle_size", "must not be negative")
	}
	if c.Sources.HTTP.URL == "" && c.Sources.Dir == "" && c.Sources.MQTT.Broker == "" {
		return nil, fail("sources", "name at least one of http.url, dir, mqtt.broker")
	}
	if c.Sources.HTTP.Timeout == 0 {
		c.Sources.HTTP.Timeout = 5 * time.Minute
	}
	return c, nil
}

// String is for logs.
func (c *Config) String() string {
	return fmt.Sprintf("ota dir %s, %d of %d keys, probation %s", c.Dir, c.Threshold, len(c.TrustedKeys), c.Probation)
}
