package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTick = 100

// cpuTime returns the user plus system CPU time pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the contents
// of /proc/<pid>/stat. The command name, field 2, may hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

// peakRSS returns VmHWM of pid in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, "VmHWM:")
}

func parseStatusKB(b []byte, key string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("status %s %w", key, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("status: no %s", key)
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// procs tracks every process the harness starts so that each one is
// stopped, whatever way the run ends.
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
	log  string        // file holding its stdout and stderr
}

func newProcs() *procs { return &procs{live: map[*proc]struct{}{}} }

// start runs argv in its own process group with stdout and stderr in
// logFile.
func (ps *procs) start(name, logFile, dir string, env []string, argv ...string) (*proc, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = lf, lf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// Own process group: a Ctrl-C in the terminal reaches the harness only,
	// which stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
	ps.mu.Lock()
	ps.live[p] = struct{}{}
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM to p's process group, then SIGKILL after grace.
func (ps *procs) stop(p *proc, grace time.Duration) {
	if p == nil {
		return
	}
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
		}
	}
	ps.mu.Lock()
	delete(ps.live, p)
	ps.mu.Unlock()
}

// stopAll stops every process still running.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	all := make([]*proc, 0, len(ps.live))
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps.stop(p, 3*time.Second)
		}()
	}
	wg.Wait()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections, p exits, or ctx
// ends.
func waitListening(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v:\n%s", p.name, addr, timeout, p.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startMosquitto starts a mosquitto broker on a free loopback port, with a
// generated configuration in dir.
func startMosquitto(ctx context.Context, ps *procs, bin, dir, name string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, name+".conf")
	// Defaults of mosquitto 2.0.11 except: loopback listener, anonymous
	// clients, no persistence, and no cap on the messages queued for a
	// client (the default of 1000 would drop QoS 1 messages for a slow
	// consumer and count them as the peer's losses).
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, "", err
	}
	p, err := ps.start(name, filepath.Join(dir, name+".log"), dir, nil, bin, "-c", conf)
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(ctx, p, addr, 10*time.Second); err != nil {
		ps.stop(p, time.Second)
		return nil, "", err
	}
	return p, addr, nil
}
