package modbus

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/confpath"
)

// Option configures a Connector.
type Option func(*settings) error

type settings struct {
	devices    []Device
	timeout    time.Duration
	retries    int
	pause      time.Duration
	coalesce   bool
	maxGap     uint16
	backoffMin time.Duration
	backoffMax time.Duration
	stable     time.Duration
	resetAfter int
	logger     *slog.Logger
}

func defaultSettings() settings {
	return settings{
		timeout:    time.Second,
		retries:    1,
		coalesce:   true,
		maxGap:     16,
		backoffMin: 200 * time.Millisecond,
		backoffMax: 30 * time.Second,
		stable:     10 * time.Second,
		resetAfter: 1,
		logger:     slog.Default(),
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// WithDevice adds a device to poll. Name and Address are required and
// names must be unique; UnitID defaults to 1 and Interval to 1s. An RTU
// device's unit id is 1..247 (0 is the broadcast address, which never
// answers), and units sharing a line must have distinct ids and, on a
// serial line, the same Serial setting (checked by New).
func WithDevice(d Device) Option {
	return func(s *settings) error {
		if d.Name == "" {
			return fmt.Errorf("device: empty name")
		}
		if d.Address == "" {
			return fmt.Errorf("device %s: empty address", d.Name)
		}
		for _, o := range s.devices {
			if o.Name == d.Name {
				return fmt.Errorf("device %s: defined twice", d.Name)
			}
		}
		if d.UnitID == 0 {
			d.UnitID = 1
		}
		if err := d.checkTransport(); err != nil {
			return fmt.Errorf("device %s: %w", d.Name, err)
		}
		if d.Interval <= 0 {
			d.Interval = time.Second
		}
		for i, r := range d.Ranges {
			if r.Count == 0 {
				return fmt.Errorf("device %s: range %d: count must be at least 1", d.Name, i)
			}
			if int(r.Address)+int(r.Count) > 1<<16 {
				return fmt.Errorf("device %s: range %d: runs past address 65535", d.Name, i)
			}
		}
		d.Ranges = append([]Range(nil), d.Ranges...)
		s.devices = append(s.devices, d)
		return nil
	}
}

func (d Device) checkTransport() error {
	switch d.Transport {
	case TCP:
		return nil
	case RTU, RTUOverTCP:
	default:
		return fmt.Errorf("unknown transport %d", d.Transport)
	}
	if d.UnitID > 247 {
		return fmt.Errorf("unit id %d: RTU unit ids are 1..247", d.UnitID)
	}
	if d.Transport == RTUOverTCP {
		return nil
	}
	s := d.Serial.withDefaults()
	if err := checkBaud(s.Baud); err != nil {
		return err
	}
	if s.StopBits != 1 && s.StopBits != 2 {
		return fmt.Errorf("stop bits %d: want 1 or 2", s.StopBits)
	}
	if s.Parity > ParityOdd {
		return fmt.Errorf("unknown parity %d", s.Parity)
	}
	return nil
}

// WithTimeout sets the per-request timeout. Default 1s. On an RTU line a
// unit that does not answer holds the line for the timeout (times the
// retries plus one) per request, delaying the other units on it; it is
// then backed off like an unreachable TCP device (WithBackoff).
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive")
		}
		s.timeout = d
		return nil
	}
}

// WithRetries sets how often a timed-out request is repeated before the
// connection is considered broken and re-established. Exception responses
// are never retried. Default 1.
func WithRetries(n int) Option {
	return func(s *settings) error {
		if n < 0 {
			return fmt.Errorf("retries must not be negative")
		}
		s.retries = n
		return nil
	}
}

// WithPause sets a pause between requests to the same device, for
// devices that cannot take back-to-back requests. Default 0.
func WithPause(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return fmt.Errorf("pause must not be negative")
		}
		s.pause = d
		return nil
	}
}

// WithCoalescing turns request coalescing on or off and sets the largest
// gap (in addresses) bridged when merging neighbouring ranges. Default on,
// gap 16. A larger gap saves requests but reads (and ships) unused
// addresses, and a device that rejects reads of unmapped addresses answers
// a merged request with an exception: turn it off or lower the gap then.
// Bit ranges less than 8 addresses apart merge even with coalescing off
// (see Plan).
func WithCoalescing(on bool, maxGap uint16) Option {
	return func(s *settings) error {
		s.coalesce, s.maxGap = on, maxGap
		return nil
	}
}

// WithBackoff sets the reconnect delay range: exponential with full
// jitter from min up to max, reset after the connection stayed up for
// stable (or served requests; see WithBackoffReset). Defaults 200ms, 30s,
// 10s.
func WithBackoff(min, max, stable time.Duration) Option {
	return func(s *settings) error {
		if min <= 0 || max < min || stable <= 0 {
			return fmt.Errorf("backoff: want 0 < min <= max and stable > 0")
		}
		s.backoffMin, s.backoffMax, s.stable = min, max, stable
		return nil
	}
}

// WithBackoffReset sets when a connection counts as healthy, so that the
// next reconnect delay starts again from the minimum: once it answered
// requests requests (data or exception responses), or once it stayed up
// for stable, whichever comes first. requests 0 resets on uptime alone.
// Defaults 1 and 10s (stable is the same setting as WithBackoff's; the
// later option wins).
//
// The default keeps a device that drops its connection every few requests
// (and serves the others) polled at short reconnect delays; with 0 such a
// device, whose connections never last stable, drives the delay to the
// maximum and most polls are lost. A larger requests value backs off from
// a device that accepts connections but breaks them after a request or
// two.
func WithBackoffReset(requests int, stable time.Duration) Option {
	return func(s *settings) error {
		if requests < 0 || stable <= 0 {
			return fmt.Errorf("backoff reset: want requests >= 0 and stable > 0")
		}
		s.resetAfter, s.stable = requests, stable
		return nil
	}
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return fmt.Errorf("nil logger")
		}
		s.logger = l
		return nil
	}
}

// Config is the YAML block of the "modbus" connector kind:
//
//	modbus:
//	  timeout: 1s       # per request
//	  retries: 1        # repeats of a timed-out request
//	  pause: 0s         # between requests to one device
//	  coalesce: true    # merge neighbouring ranges
//	  max_gap: 16       # largest gap bridged when merging
//	  backoff_min: 200ms
//	  backoff_max: 30s
//	  reconnect:        # when a connection counts as healthy (WithBackoffReset)
//	    reset_after_requests: 1   # answered requests; 0: uptime only
//	    stable: 10s               # or uptime
//	  devices:
//	    - name: plc1
//	      address: 10.0.0.5:502
//	      unit_id: 1
//	      interval: 1s
//	      ranges:
//	        - {table: hr, address: 0, count: 10}
//	        - {table: coil, address: 100, count: 8}
//	    - name: meter7               # Modbus RTU on a serial line
//	      transport: rtu             # tcp (default), rtu, rtu-over-tcp
//	      address: /dev/ttyUSB0      # rtu: the device path; otherwise host:port
//	      serial: {baud: 19200, parity: even, stop_bits: 1}   # the defaults
//	      unit_id: 7
//	      ranges:
//	        - {table: ir, address: 0, count: 4}
type Config struct {
	Timeout    time.Duration    `yaml:"timeout"`
	Retries    *int             `yaml:"retries"`
	Pause      time.Duration    `yaml:"pause"`
	Coalesce   *bool            `yaml:"coalesce"`
	MaxGap     *uint16          `yaml:"max_gap"`
	BackoffMin time.Duration    `yaml:"backoff_min"`
	BackoffMax time.Duration    `yaml:"backoff_max"`
	Reconnect  *ReconnectConfig `yaml:"reconnect"`
	Devices    []DeviceConfig   `yaml:"devices"`
}

// ReconnectConfig is the reconnect: block; see WithBackoffReset.
type ReconnectConfig struct {
	ResetAfterRequests *int          `yaml:"reset_after_requests"`
	Stable             time.Duration `yaml:"stable"`
}

// DeviceConfig is one entry of devices:.
type DeviceConfig struct {
	Name      string        `yaml:"name"`
	Transport string        `yaml:"transport"`
	Address   string        `yaml:"address"`
	Serial    *SerialConfig `yaml:"serial"`
	UnitID    uint8         `yaml:"unit_id"`
	Interval  time.Duration `yaml:"interval"`
	Ranges    []RangeConfig `yaml:"ranges"`
}

// SerialConfig is the serial: block of an RTU device: baud (default
// 19200), parity (even, none or odd; default even) and stop_bits (1 or 2;
// default 1). Devices on one path must agree.
type SerialConfig struct {
	Baud     int    `yaml:"baud"`
	Parity   string `yaml:"parity"`
	StopBits int    `yaml:"stop_bits"`
}

// RangeConfig is one entry of ranges:.
type RangeConfig struct {
	Table   string `yaml:"table"`
	Address uint16 `yaml:"address"`
	Count   uint16 `yaml:"count"`
}

// Register adds the "modbus" connector kind to reg.
func Register(reg *gateway.Registry) error {
	return reg.AddConnector("modbus", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		opts, err := cfg.options(spec)
		if err != nil {
			return nil, err
		}
		return New(append([]Option{WithLogger(spec.Logger())}, opts...)...)
	})
}

func (cfg Config) options(spec gateway.Section) ([]Option, error) {
	var opts []Option
	if cfg.Timeout < 0 {
		return nil, spec.Errorf("timeout", "must be positive")
	} else if cfg.Timeout > 0 {
		opts = append(opts, WithTimeout(cfg.Timeout))
	}
	if cfg.Retries != nil {
		if *cfg.Retries < 0 {
			return nil, spec.Errorf("retries", "must not be negative")
		}
		opts = append(opts, WithRetries(*cfg.Retries))
	}
	if cfg.Pause < 0 {
		return nil, spec.Errorf("pause", "must not be negative")
	}
	opts = append(opts, WithPause(cfg.Pause))
	co, gap := true, uint16(16)
	if cfg.Coalesce != nil {
		co = *cfg.Coalesce
	}
	if cfg.MaxGap != nil {
		gap = *cfg.MaxGap
	}
	opts = append(opts, WithCoalescing(co, gap))
	if cfg.BackoffMin != 0 || cfg.BackoffMax != 0 {
		lo, hi := cfg.BackoffMin, cfg.BackoffMax
		if lo == 0 {
			lo = 200 * time.Millisecond
		}
		if hi == 0 {
			hi = 30 * time.Second
		}
		if lo < 0 || hi < lo {
			return nil, spec.Errorf("backoff_min", "want 0 < backoff_min <= backoff_max")
		}
		opts = append(opts, WithBackoff(lo, hi, 10*time.Second))
	}
	if rc := cfg.Reconnect; rc != nil {
		n, stable := 1, rc.Stable
		if rc.ResetAfterRequests != nil {
			n = *rc.ResetAfterRequests
		}
		switch {
		case n < 0:
			return nil, confpath.Errorf(spec, confpath.Path{"reconnect", "reset_after_requests"}, "must not be negative")
		case stable < 0:
			return nil, confpath.Errorf(spec, confpath.Path{"reconnect", "stable"}, "must be positive")
		case stable == 0:
			stable = 10 * time.Second
		}
		opts = append(opts, WithBackoffReset(n, stable))
	}
	if len(cfg.Devices) == 0 {
		return nil, spec.Errorf("devices", "at least one device is required")
	}
	seen := map[string]bool{}
	type lineUse struct {
		first  int
		serial Serial
		units  map[uint8]int
	}
	lines := map[string]*lineUse{}
	for i, d := range cfg.Devices {
		switch {
		case d.Name == "":
			return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "name"}, "required")
		case seen[d.Name]:
			return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "name"}, "duplicate device %q", d.Name)
		case d.Address == "":
			return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "address"}, "required (host:port, or the serial device path for rtu)")
		case d.Interval < 0:
			return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "interval"}, "must be positive")
		}
		seen[d.Name] = true
		dev := Device{Name: d.Name, Address: d.Address, UnitID: d.UnitID, Interval: d.Interval}
		tr, err := ParseTransport(d.Transport)
		if err != nil {
			return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "transport"}, "%v", err)
		}
		dev.Transport = tr
		if d.Serial != nil {
			if tr != RTU {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "serial"}, "only for transport: rtu")
			}
			p, err := ParseParity(d.Serial.Parity)
			if err != nil {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "serial", "parity"}, "%v", err)
			}
			dev.Serial = Serial{Baud: d.Serial.Baud, Parity: p, StopBits: d.Serial.StopBits}
			if d.Serial.Baud != 0 {
				if err := checkBaud(d.Serial.Baud); err != nil {
					return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "serial", "baud"}, "%v", err)
				}
			}
			if n := d.Serial.StopBits; n != 0 && n != 1 && n != 2 {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "serial", "stop_bits"}, "want 1 or 2")
			}
		}
		if tr != TCP {
			if d.UnitID > 247 {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "unit_id"}, "RTU unit ids are 1..247")
			}
			key := tr.String() + " " + d.Address
			unit := max(d.UnitID, 1)
			if l, ok := lines[key]; ok {
				if tr == RTU && l.serial != dev.Serial.withDefaults() {
					return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "serial"},
						"line %s is also devices[%d]'s, with another setting: devices on one line must agree", d.Address, l.first)
				}
				if j, dup := l.units[unit]; dup {
					return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "unit_id"},
						"unit %d on %s is also devices[%d]", unit, d.Address, j)
				}
			} else {
				lines[key] = &lineUse{first: i, serial: dev.Serial.withDefaults(), units: map[uint8]int{}}
			}
			lines[key].units[unit] = i
		}
		for j, r := range d.Ranges {
			t, err := ParseTable(r.Table)
			if err != nil {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "ranges", j, "table"}, "%v", err)
			}
			if r.Count == 0 || int(r.Address)+int(r.Count) > 1<<16 {
				return nil, confpath.Errorf(spec, confpath.Path{"devices", i, "ranges", j, "count"}, "want 1.. and address+count <= 65536")
			}
			dev.Ranges = append(dev.Ranges, Range{Table: t, Address: r.Address, Count: r.Count})
		}
		opts = append(opts, WithDevice(dev))
	}
	return opts, nil
}
