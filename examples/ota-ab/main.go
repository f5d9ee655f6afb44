// Command ota-ab shows how a host updates its own executable with package
// ota's hooks, A/B style: two slots, a boot record, and a boot counter.
// The new executable must mark itself good within -max-starts starts or
// the launcher restores the previous one. OS images are RAUC's or
// Mender's business; this covers one binary.
//
//	ota-ab boot -dir /var/lib/app          # the launcher: prints the slot to exec
//	ota-ab mark-good -dir /var/lib/app     # the running binary, once healthy
//	ota-ab status -dir /var/lib/app
//
// A bundle carries the executable at bin/app. The hooks (Slots):
//   - Verify: the bundle has bin/app;
//   - PreApply: copy it into the inactive slot (fsynced, renamed into place)
//     and make that slot active with a pending boot record;
//   - Commit: after the probation, mark the slot good;
//   - Rollback: make the previous slot active again.
//
// The launcher (Boot) counts the starts of a pending slot and, past the
// limit, switches back: a binary that crashes before its probation ends,
// or never reaches the Commit hook, is undone on its own.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/iotgw/gateway/ota"
)

// Record is the boot record, boot.json.
type Record struct {
	Active   string `json:"active"`   // "a" or "b"
	Previous string `json:"previous"` // the slot to restore
	Pending  bool   `json:"pending"`  // Active has not marked itself good
	Starts   int    `json:"starts"`   // starts of Active while pending
}

// Slots holds the A/B slots under Dir and implements the hooks.
type Slots struct {
	Dir       string
	MaxStarts int // starts a pending slot gets before it is undone; default 3
}

var (
	_ ota.Verifier     = (*Slots)(nil)
	_ ota.PreApplier   = (*Slots)(nil)
	_ ota.Committer    = (*Slots)(nil)
	_ ota.RollbackHook = (*Slots)(nil)
)

// AppFile is the executable's path in a bundle.
const AppFile = "bin/app"

func (s *Slots) record() (Record, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "boot.json"))
	if errors.Is(err, os.ErrNotExist) {
		return Record{Active: "a", Previous: "a"}, nil
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	return r, json.Unmarshal(b, &r)
}

// save writes the record atomically (temporary file, fsync, rename,
// fsync of the directory).
func (s *Slots) save(r Record) error {
	b, _ := json.Marshal(r)
	return writeAtomic(filepath.Join(s.Dir, "boot.json"), b)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// Verify implements ota.Verifier.
func (s *Slots) Verify(_ context.Context, g *ota.Generation) error {
	fi, err := os.Stat(g.Path(AppFile))
	if err != nil || fi.Size() == 0 {
		return fmt.Errorf("bundle has no %s", AppFile)
	}
	return nil
}

// PreApply implements ota.PreApplier: the new executable goes into the
// inactive slot, which becomes active, pending.
func (s *Slots) PreApply(_ context.Context, _, to *ota.Generation) error {
	r, err := s.record()
	if err != nil {
		return err
	}
	target := other(r.Active)
	data, err := os.ReadFile(to.Path(AppFile))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, target), 0o755); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(s.Dir, target, "app"), data); err != nil {
		return err
	}
	return s.save(Record{Active: target, Previous: r.Active, Pending: true})
}

// Commit implements ota.Committer: the slot passed its probation.
func (s *Slots) Commit(context.Context, *ota.Generation) error { return s.MarkGood() }

// Rollback implements ota.RollbackHook.
func (s *Slots) Rollback(context.Context, *ota.Generation, *ota.Generation, string) error {
	r, err := s.record()
	if err != nil || !r.Pending {
		return err
	}
	return s.save(Record{Active: r.Previous, Previous: r.Previous})
}

// MarkGood marks the active slot good.
func (s *Slots) MarkGood() error {
	r, err := s.record()
	if err != nil || !r.Pending {
		return err
	}
	r.Pending, r.Starts = false, 0
	return s.save(r)
}

// Boot is the launcher's step before each start: it counts a pending
// slot's starts and restores the previous slot past MaxStarts. It returns
// the executable to run.
func (s *Slots) Boot() (string, Record, error) {
	max := s.MaxStarts
	if max == 0 {
		max = 3
	}
	r, err := s.record()
	if err != nil {
		return "", r, err
	}
	if r.Pending {
		if r.Starts >= max {
			r = Record{Active: r.Previous, Previous: r.Previous}
		} else {
			r.Starts++
		}
		if err := s.save(r); err != nil {
			return "", r, err
		}
	}
	return filepath.Join(s.Dir, r.Active, "app"), r, nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ota-ab:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: ota-ab boot|mark-good|status -dir DIR")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "slots directory (required)")
	max := fs.Int("max-starts", 3, "starts a new executable gets to mark itself good")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	s := &Slots{Dir: *dir, MaxStarts: *max}
	switch args[0] {
	case "boot":
		exe, r, err := s.Boot()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s pending=%v starts=%d\n", exe, r.Pending, r.Starts)
		return nil
	case "mark-good":
		return s.MarkGood()
	case "status":
		r, err := s.record()
		if err != nil {
			return err
		}
		return json.NewEncoder(out).Encode(r)
	}
	return fmt.Errorf("unknown command %q", args[0])
}
