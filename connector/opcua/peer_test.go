package opcua

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// nodeOPCUAVersion is the node-opcua release the tests install with npm.
const nodeOPCUAVersion = "2.186.4"

// benchNodes is the number of Bench.N<i> nodes the shared server holds,
// maxPerRead its MaxNodesPerRead.
const (
	benchNodes = 1000
	maxPerRead = 500
)

// peer is the node-opcua server that the package's tests share (started
// once per package run; the restart test restarts it on the same port).
type peer struct {
	modules, script string
	port            int
	pki             string
	clientDir       string // a client certificate the server trusts
	benchNodes      int    // Bench.N<i> nodes

	mu  sync.Mutex
	cmd *exec.Cmd
}

var (
	peerOnce   sync.Once
	shared     *peer
	sharedSkip string
)

// TestMain stops the shared server after the tests. The server starts on
// the first test that needs it (so unit tests and fuzzing start none).
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
		_ = os.RemoveAll(filepath.Dir(shared.pki))
	}
	os.Exit(code)
}

// requirePeer returns the shared server, starting it once, or skips
// (fails in CI) when node-opcua cannot be installed or started.
func requirePeer(t testing.TB) *peer {
	t.Helper()
	peerOnce.Do(func() {
		p, err := startPeer()
		if err != nil {
			sharedSkip = err.Error()
			return
		}
		shared = p
	})
	if shared == nil {
		testenv.Skip(t, "node-opcua peer: "+sharedSkip)
	}
	return shared
}

// cacheDir is where node-opcua is installed, reused across runs:
// $XDG_CACHE_HOME/iotgw-peers or ~/.cache/iotgw-peers.
func cacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "iotgw-peers"), nil
}

// installNodeOPCUA installs node-opcua into the cache once and returns
// its node_modules folder.
func installNodeOPCUA() (string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("needs node and npm (Debian nodejs, npm)")
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "node-opcua-"+nodeOPCUAVersion)
	mods := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(mods, "node-opcua", "package.json")); err == nil {
		return mods, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("needs npm (Debian npm) to install node-opcua")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", dir, "node-opcua@"+nodeOPCUAVersion)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install node-opcua@%s: %v: %s", nodeOPCUAVersion, err, lastLines(string(out), 5))
	}
	return mods, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func startPeer() (*peer, error) {
	mods, err := installNodeOPCUA()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "opcua-peer-")
	if err != nil {
		return nil, err
	}
	script, _ := filepath.Abs("testdata/server.js")
	p := &peer{modules: mods, script: script, pki: filepath.Join(tmp, "pki"), clientDir: filepath.Join(tmp, "client"), benchNodes: benchNodes}
	// A client certificate the server trusts from the start.
	cert, key := filepath.Join(p.clientDir, "cert.der"), filepath.Join(p.clientDir, "key.pem")
	if err := generateCert(cert, key); err != nil {
		return nil, err
	}
	trusted := filepath.Join(p.pki, "trusted", "certs")
	if err := os.MkdirAll(trusted, 0o755); err != nil {
		return nil, err
	}
	raw, _ := os.ReadFile(cert)
	if err := os.WriteFile(filepath.Join(trusted, "gateway.der"), raw, 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *peer) endpoint() string { return "opc.tcp://127.0.0.1:" + strconv.Itoa(p.port) }

// serverCert is the server's own certificate file (PEM).
func (p *peer) serverCert() string { return filepath.Join(p.pki, "own", "certs", "certificate.pem") }

func (p *peer) start() error {
	cmd := exec.Command("node", "--security-revert=CVE-2023-46809", p.script, strconv.Itoa(p.port), p.pki,
		strconv.Itoa(p.benchNodes), strconv.Itoa(maxPerRead))
	cmd.Env = append(os.Environ(), "NODE_PATH="+p.modules)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr conntest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if sc.Text() == "ready" && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return fmt.Errorf("node-opcua server exited: %s", lastLines(stderr.String(), 5))
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("node-opcua server not ready in 60s: %s", lastLines(stderr.String(), 5))
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	return nil
}

func (p *peer) stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// restart kills the server (as a crash would) and starts it again on the
// same port; it returns when the new one listens.
func (p *peer) restart(t testing.TB) {
	t.Helper()
	p.stop()
	if err := p.start(); err != nil {
		t.Fatalf("restart node-opcua: %v", err)
	}
}

// cutRelay forwards TCP to a server and can cut the network: while cut
// it forwards nothing and accepts no connection, keeping the sockets
// open, as a pulled cable or a dropping firewall would.
type cutRelay struct {
	ln    net.Listener
	to    string
	cut   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startCutRelay(t *testing.T, to string) *cutRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &cutRelay{ln: ln, to: to}
	t.Cleanup(func() {
		ln.Close()
		r.closeAll()
		r.wg.Wait()
	})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if r.cut.Load() {
				// Dropped: the SYN got through to the kernel, but no
				// byte will ever pass.
				r.track(in)
				continue
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			r.track(in)
			r.track(out)
			r.wg.Add(2)
			go r.pipe(in, out)
			go r.pipe(out, in)
		}
	}()
	return r
}

func (r *cutRelay) track(c net.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *cutRelay) closeAll() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
}

// pipe copies src to dst, dropping what it reads while the relay is cut.
func (r *cutRelay) pipe(src, dst net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (r *cutRelay) endpoint() string { return "opc.tcp://" + r.ln.Addr().String() }
