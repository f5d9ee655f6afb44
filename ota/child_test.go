package ota

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/resume"
)

// TestOTAChild is the gateway process the crash-injection and rollback
// tests start (and kill): an edge-mode gateway with a SQLite store and an
// Updater. Started without OTA_CHILD it does nothing.
func TestOTAChild(t *testing.T) {
	if os.Getenv("OTA_CHILD") == "" {
		return
	}
	if err := runChild(); err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func runChild() error {
	env := os.Getenv
	if p := env("OTA_CRASH"); p != "" || env("OTA_POINTS") != "" {
		var log *os.File
		if f := env("OTA_POINTS"); f != "" {
			log, _ = os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		}
		crashPoint = func(point string) {
			if log != nil {
				fmt.Fprintln(log, point)
			}
			if point == p {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	port, _ := strconv.Atoi(env("OTA_PORT"))
	quiet := slog.New(slog.DiscardHandler)
	if env("OTA_VERBOSE") != "" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	base, err := gateway.ParseConfig([]byte(genConfig(port, env("OTA_BROKER"), "base", brokerPass, "json")), "base.yaml")
	if err != nil {
		return err
	}
	window, _ := time.ParseDuration(env("OTA_WINDOW"))
	grace, _ := time.ParseDuration(env("OTA_GRACE"))
	app := &GatewayApplier{Base: base}
	counters := &Counters{ReadyGrace: grace}
	replay := &ReplayDeadLetters{}
	u, err := New(env("OTA_DIR"), Trust{Keys: []string{env("OTA_TRUST")}, Threshold: 1}, app,
		WithLogger(quiet), WithProbation(window, 100*time.Millisecond), WithHealth(counters), WithHooks(replay))
	if err != nil {
		return err
	}
	cur, err := u.Current()
	if err != nil {
		return err
	}
	if cur != nil {
		if err := cur.VerifyFiles(); err != nil {
			return fmt.Errorf("current generation not whole: %w", err)
		}
	}
	cfg, err := app.Config(cur)
	if err != nil {
		return err
	}
	st, err := resume.OpenSQLiteStore(resume.SQLiteConfig{Path: env("OTA_DB"), Logger: quiet, MinFreeBytes: -1})
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := gateway.New(gateway.WithLogger(quiet), gateway.WithRegistry(testRegistry(nopTB{})), gateway.WithConfig(cfg),
		gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithQoS(1))
	if err != nil {
		return err
	}
	app.Gateway, replay.Gateway = g, g
	counters.Stats, counters.Ready = g.Stats, g.Ready
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(ctx) }()
	go counters.Watch(ctx, 100*time.Millisecond)
	if err := g.CheckConfig(ctx, cfg); err != nil {
		return fmt.Errorf("running configuration does not validate: %w", err)
	}
	s := u.Status()
	fmt.Printf("RUNNING %q %s %d\n", s.Current, s.State, s.Version)
	// Let the devices get going before updating.
	for deadline := time.Now().Add(5 * time.Second); g.Stats().FramesIn < 20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if err := u.Resume(ctx); err != nil && !errors.As(err, new(*RollbackError)) {
		return err
	}
	var uerr error
	if b := env("OTA_BUNDLE"); b != "" {
		f, err := os.Open(b)
		if err != nil {
			return err
		}
		fmt.Printf("UPDATING\n")
		uerr = u.Update(ctx, f)
		f.Close()
	}
	s = u.Status()
	fmt.Printf("DONE %s %q %d %s\n", s.State, s.Current, s.Version, strconv.Quote(fmt.Sprint(uerr)))
	return <-runErr
}

// nopTB lets the child use the registry helper outside a test.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                   {}
func (nopTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (nopTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// child is a started TestOTAChild process.
type child struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
}

type childEnv struct {
	dir, db, broker, trust string
	port                   int
	window, grace          time.Duration
}

func (e childEnv) start(t testing.TB, bundle, crash, points string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOTAChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OTA_CHILD=1", "OTA_DIR="+e.dir, "OTA_DB="+e.db, "OTA_BROKER="+e.broker,
		"OTA_TRUST="+e.trust, "OTA_PORT="+strconv.Itoa(e.port), "OTA_WINDOW="+e.window.String(), "OTA_GRACE="+e.grace.String(),
		"OTA_BUNDLE="+bundle, "OTA_CRASH="+crash, "OTA_POINTS="+points)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "RUNNING ") || strings.HasPrefix(line, "DONE ") || strings.HasPrefix(line, "FAIL ") || line == "UPDATING" {
				c.lines <- line
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(c.done)
	}()
	return c
}

// next returns the child's next status line ("" once it exited).
func (c *child) next(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l := <-c.lines:
		if strings.HasPrefix(l, "FAIL ") {
			t.Fatalf("child: %s", l)
		}
		return l
	case <-c.done:
		select {
		case l := <-c.lines:
			if strings.HasPrefix(l, "FAIL ") {
				t.Fatalf("child: %s", l)
			}
			return l
		default:
		}
		return ""
	case <-time.After(timeout):
		c.kill()
		t.Fatalf("child silent for %s", timeout)
	}
	return ""
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

func (c *child) exitedByKill() bool {
	<-c.done
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// writeBundleFile signs a bundle of the gateway configuration cfg as
// version v and writes it into dir.
func writeBundleFile(t testing.TB, dir, name string, v uint64, cfg, skey string) string {
	t.Helper()
	files := map[string]string{ConfigFile: cfg}
	m := manifest(v, files)
	m.Created, m.Expires = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, bundle(t, m, files, skey), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
