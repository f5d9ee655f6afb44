package mqtt

// Every device session holds a file descriptor, so the session limit is
// only real if the process may open that many. Go already raises the soft
// RLIMIT_NOFILE to the hard limit at start on Linux; the listener raises
// it again if something lowered it, and warns when the limit still falls
// short of max_sessions plus headroom, instead of letting the overflow
// show only as accept errors.

// fileHeadroom is the number of descriptors left for everything but device
// sessions: listening sockets, the store, sinks, logs, the configuration
// watch, other connectors.
const fileHeadroom = 256

// Hooks for tests; the real ones read and set RLIMIT_NOFILE where the
// platform has it (filelimit_linux.go).
var (
	getFileLimit = osFileLimit
	setFileLimit = osSetFileLimit
)

// filePlan decides for a session limit and the current soft and hard
// RLIMIT_NOFILE which soft limit to set (0: leave it alone) and whether
// the limit is short of sessions plus fileHeadroom even after raising it.
func filePlan(sessions int, soft, hard uint64) (raiseTo uint64, short bool) {
	need := uint64(sessions) + fileHeadroom
	if soft >= need {
		return 0, false
	}
	if hard > soft {
		raiseTo = min(need, hard)
	}
	return raiseTo, max(soft, raiseTo) < need
}

// checkFileLimit makes room for sessions device sessions if the process
// may, and warns if it may not.
func (l *Listener) checkFileLimit(sessions int) {
	soft, hard, ok := getFileLimit()
	if !ok {
		return // unknown on this platform
	}
	raiseTo, short := filePlan(sessions, soft, hard)
	if raiseTo > 0 {
		if err := setFileLimit(raiseTo, hard); err != nil {
			short = true
			l.s.logger.Warn("mqtt listener: could not raise the open file limit", "to", raiseTo, "err", err)
		} else {
			l.s.logger.Info("mqtt listener: raised the open file limit for device sessions", "from", soft, "to", raiseTo)
			soft = raiseTo
		}
	}
	if short {
		l.s.logger.Warn("mqtt listener: the open file limit is below max_sessions plus headroom; sessions beyond it will fail to connect",
			"max_sessions", sessions, "headroom", fileHeadroom, "nofile_soft", soft, "nofile_hard", hard)
	}
}
