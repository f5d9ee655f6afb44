package resume

import (
	"time"

	"github.com/iotgw/gateway"
)

// sqliteSection is the YAML form of SQLiteConfig:
//
//	store:
//	  sqlite:
//	    path: /var/lib/gw/queue.db   # required
//	    synchronous: FULL            # FULL (default) | NORMAL
//	    commit_max_records: 4096
//	    commit_delay: 0s
//	    max_rows: 10000000
//	    max_bytes: 1073741824
//	    overflow: reject_new         # reject_new (default) | drop_oldest
//	    min_free_bytes: 16777216     # -1 disables the check
//	    skip_integrity_check: false
type sqliteSection struct {
	Path               string        `yaml:"path"`
	Synchronous        string        `yaml:"synchronous"`
	CommitMaxRecords   int           `yaml:"commit_max_records"`
	CommitDelay        time.Duration `yaml:"commit_delay"`
	MaxRows            int64         `yaml:"max_rows"`
	MaxBytes           int64         `yaml:"max_bytes"`
	Overflow           string        `yaml:"overflow"`
	MinFreeBytes       int64         `yaml:"min_free_bytes"`
	SkipIntegrityCheck bool          `yaml:"skip_integrity_check"`
}

// Register adds the store kind "sqlite" to reg, so a configuration can say
// `store: {sqlite: {path: ...}}`. Building the store opens nothing; the
// database opens on first use.
func Register(reg *gateway.Registry) error {
	return reg.AddStore("sqlite", func(spec gateway.Section) (gateway.Store, error) {
		var sec sqliteSection
		if err := spec.Decode(&sec); err != nil {
			return nil, err
		}
		if sec.Path == "" {
			return nil, spec.Errorf("path", "required: the database file")
		}
		cfg := SQLiteConfig{
			Path: sec.Path, Synchronous: Synchronous(sec.Synchronous),
			CommitMaxRecords: sec.CommitMaxRecords, CommitDelay: sec.CommitDelay,
			MaxRows: sec.MaxRows, MaxBytes: sec.MaxBytes, MinFreeBytes: sec.MinFreeBytes,
			SkipIntegrityCheck: sec.SkipIntegrityCheck,
		}
		switch sec.Overflow {
		case "", "reject_new":
		case "drop_oldest":
			cfg.Overflow = OverflowDropOldest
		default:
			return nil, spec.Errorf("overflow", "%q: want reject_new or drop_oldest", sec.Overflow)
		}
		switch sec.Synchronous {
		case "", "FULL", "NORMAL", "full", "normal":
		default:
			return nil, spec.Errorf("synchronous", "%q: want FULL or NORMAL", sec.Synchronous)
		}
		if sec.CommitMaxRecords < 0 {
			return nil, spec.Errorf("commit_max_records", "must not be negative")
		}
		st, err := NewSQLiteStore(cfg)
		if err != nil {
			return nil, spec.Errorf("path", "%v", err)
		}
		return st, nil
	})
}
