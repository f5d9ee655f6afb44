package ota

import (
	"encoding/json"
	"fmt"
	"time"
)

// State is where an update stands. It is persisted (the state file in the
// state directory) so that a restart resumes or rolls back.
type State int

// The states. Idle, Committed, RolledBack and Failed are at rest: the
// current generation runs and a new bundle may be offered.
const (
	Idle        State = iota // nothing in progress
	Downloading              // fetching a bundle
	Verifying                // checking signatures, versions, hashes, the configuration
	Staged                   // a whole, verified generation waits to be applied
	Applying                 // the current pointer moves to it and the host applies it
	Probation                // the new generation runs under health watch
	Committed                // it passed probation: it is the last known-good
	RollingBack              // degraded: going back to the last known-good
	RolledBack               // the last known-good runs again
	Failed                   // a bundle was rejected or a rollback failed
	numStates
)

var stateNames = [...]string{"Idle", "Downloading", "Verifying", "Staged", "Applying", "Probation", "Committed", "RollingBack", "RolledBack", "Failed"}

func (s State) String() string {
	if s >= 0 && s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("ota: unknown state %q", b)
}

// Resting reports whether no update is in progress in s.
func (s State) Resting() bool {
	return s == Idle || s == Committed || s == RolledBack || s == Failed
}

// Event drives the state machine.
type Event int

// The events.
const (
	EvOffer          Event = iota // a source offers a bundle
	EvDownloaded                  // the bundle is here
	EvVerified                    // signatures, hashes and configuration check out; the generation is staged
	EvReject                      // the bundle is refused (or the download failed)
	EvApply                       // start applying the staged generation
	EvApplied                     // the host runs the new generation
	EvApplyFailed                 // the host could not apply it
	EvHealthy                     // the probation window passed without degradation
	EvDegraded                    // a health check failed during probation
	EvRolledBack                  // the last known-good runs again
	EvRollbackFailed              // it could not be restored
	EvRestart                     // the process started with this state persisted
	numEvents
)

var eventNames = [...]string{"Offer", "Downloaded", "Verified", "Reject", "Apply", "Applied", "ApplyFailed", "Healthy", "Degraded", "RolledBack", "RollbackFailed", "Restart"}

func (e Event) String() string {
	if e >= 0 && e < numEvents {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// Next is the transition function: the state after e in s, or an error
// wrapping ErrBadTransition. EvRestart maps each state to where a
// restart continues: a download or verification in progress is
// discarded, an apply in progress is finished and put on probation, a
// probation interrupted by a crash counts as a failure and rolls back, a
// rollback in progress is finished.
func Next(s State, e Event) (State, error) {
	switch e {
	case EvOffer:
		if s.Resting() {
			return Downloading, nil
		}
	case EvDownloaded:
		if s == Downloading {
			return Verifying, nil
		}
	case EvVerified:
		if s == Verifying {
			return Staged, nil
		}
	case EvReject:
		if s == Downloading || s == Verifying {
			return Failed, nil
		}
	case EvApply:
		if s == Staged {
			return Applying, nil
		}
	case EvApplied:
		if s == Applying {
			return Probation, nil
		}
	case EvApplyFailed:
		if s == Applying {
			return RollingBack, nil
		}
	case EvHealthy:
		if s == Probation {
			return Committed, nil
		}
	case EvDegraded:
		if s == Probation {
			return RollingBack, nil
		}
	case EvRolledBack:
		if s == RollingBack {
			return RolledBack, nil
		}
	case EvRollbackFailed:
		if s == RollingBack {
			return Failed, nil
		}
	case EvRestart:
		switch s {
		case Downloading, Verifying:
			return Idle, nil
		case Applying:
			return Probation, nil
		case Probation:
			return RollingBack, nil
		default:
			if s >= 0 && s < numStates {
				return s, nil
			}
		}
	}
	return s, fmt.Errorf("%w: %s on %s", ErrBadTransition, s, e)
}

// Status is the persisted record of the machine, also the body of the
// reported document.
type Status struct {
	State State `json:"state"`
	// Current is the running generation ("" for the host's base
	// configuration), Version its manifest version.
	Current string `json:"current"`
	Version uint64 `json:"version"`
	// Good is the last known-good generation, GoodVersion its version.
	Good        string `json:"good"`
	GoodVersion uint64 `json:"good_version"`
	// Target is the generation being applied (Staged, Applying,
	// Probation), TargetVersion its version.
	Target        string `json:"target,omitempty"`
	TargetVersion uint64 `json:"target_version,omitempty"`
	// Offered is the version of the last bundle whose signatures
	// verified, whatever became of it.
	Offered uint64 `json:"offered,omitempty"`
	// Reason says why the last update failed, was rejected or rolled back.
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Trust is the rotated trust (nil: the configured one).
	Trust *Trust `json:"trust,omitempty"`
}

func (s Status) marshal() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}
