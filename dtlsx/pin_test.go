package dtlsx

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinThreads puts every thread of this process on cpu and, with fifo, in
// the SCHED_FIFO real-time class. Threads the runtime starts later inherit
// both from the thread that creates them.
func pinThreads(cpu int, fifo bool) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("affinity of thread %d: %w", tid, err)
		}
		if fifo {
			if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}, 0); err != nil {
				return fmt.Errorf("SCHED_FIFO for thread %d: %w", tid, err)
			}
		}
	}
	return nil
}
