package ota

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Source delivers bundles. Fetch returns the next bundle to install, or
// an error wrapping ErrNotModified when there is nothing new. Done is
// called once the bundle was handled (err is Update's result), so the
// source does not offer it again.
type Source interface {
	Fetch(ctx context.Context) (io.ReadCloser, error)
	Done(err error)
}

// Notifier is a Source that can say when it has something new (an MQTT
// desired document arrived), so Run does not wait for its next poll.
type Notifier interface {
	Notify() <-chan struct{}
}

// Run resumes what a restart left (Resume), then polls the sources every
// interval (and whenever a Notifier source says so) and installs what
// they deliver, until ctx ends. Rejections and rollbacks are logged,
// counted and reported; Run goes on.
func (u *Updater) Run(ctx context.Context, every time.Duration, sources ...Source) error {
	if err := u.Resume(ctx); err != nil && ctx.Err() == nil {
		u.log.Error("ota: resume", "err", err)
	}
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range sources {
		if n, ok := s.(Notifier); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case <-n.Notify():
						select {
						case wake <- struct{}{}:
						default:
						}
					}
				}
			}()
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, s := range sources {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rc, err := s.Fetch(ctx)
			if errors.Is(err, ErrNotModified) {
				continue
			}
			if err != nil {
				u.log.Warn("ota: fetch", "err", err)
				continue
			}
			err = u.Update(ctx, rc)
			rc.Close()
			if errors.Is(err, ErrBusy) {
				continue
			}
			s.Done(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-wake:
		}
	}
}

// DirSource offers the bundles (*.otb) found in a directory, for
// air-gapped installs from removable media: each file once (by name, size
// and modification time), in name order. It never changes the directory.
type DirSource struct {
	Dir string

	mu      sync.Mutex
	handled map[string]bool
	pending string
}

func fileKey(fi os.FileInfo) string {
	return fi.Name() + "|" + strconv.FormatInt(fi.Size(), 10) + "|" + fi.ModTime().UTC().String()
}

// Fetch implements Source.
func (d *DirSource) Fetch(ctx context.Context) (io.ReadCloser, error) {
	ents, err := os.ReadDir(d.Dir)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handled == nil {
		d.handled = map[string]bool{}
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".otb") {
			continue
		}
		fi, err := e.Info()
		if err != nil || d.handled[fileKey(fi)] {
			continue
		}
		f, err := os.Open(filepath.Join(d.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		d.pending = fileKey(fi)
		return f, nil
	}
	return nil, ErrNotModified
}

// Done implements Source.
func (d *DirSource) Done(error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handled[d.pending] = true
}

// HTTPSource pulls a bundle from a URL. It asks with If-None-Match so an
// unchanged bundle costs a 304, resumes an interrupted download with a
// Range request (If-Range: the same ETag), and refuses a bundle above
// MaxSize.
type HTTPSource struct {
	URL string
	// Client: default http.DefaultClient. Use one with a timeout and the
	// TLS roots of the update server.
	Client *http.Client
	// Dir keeps the partial download and the ETag of the last bundle
	// handled, so a restart resumes and does not fetch it again.
	// Required.
	Dir string
	// MaxSize bounds the download. Default: 64 MiB.
	MaxSize int64

	mu       sync.Mutex
	pendingE string
	resumed  int // Range requests answered with 206 (tests read it)
}

const (
	partFile = "download.part"
	partETag = "download.part.etag"
	doneETag = "download.done.etag"
)

func (h *HTTPSource) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, name))
	return strings.TrimSpace(string(b))
}

// Fetch implements Source.
func (h *HTTPSource) Fetch(ctx context.Context) (io.ReadCloser, error) {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return nil, err
	}
	limit := h.MaxSize
	if limit <= 0 {
		limit = 64 << 20
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	part := filepath.Join(h.Dir, partFile)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return nil, err
	}
	if e := h.read(doneETag); e != "" {
		req.Header.Set("If-None-Match", e)
	}
	var have int64
	if fi, err := os.Stat(part); err == nil && fi.Size() > 0 {
		if e := h.read(partETag); e != "" {
			have = fi.Size()
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
			req.Header.Set("If-Range", e)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	etag := resp.Header.Get("ETag")
	var f *os.File
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, fmt.Errorf("%w: %s", ErrNotModified, h.URL)
	case http.StatusPartialContent:
		if have == 0 || !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)) {
			return nil, fmt.Errorf("ota: %s: unexpected range %q", h.URL, resp.Header.Get("Content-Range"))
		}
		f, err = os.OpenFile(part, os.O_WRONLY|os.O_APPEND, 0o644)
		h.mu.Lock()
		h.resumed++
		h.mu.Unlock()
	case http.StatusOK:
		have = 0
		if err := writeAtomic(h.Dir, partETag, []byte(etag+"\n"), "download:etag"); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	default:
		return nil, fmt.Errorf("ota: %s: %s", h.URL, resp.Status)
	}
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > 0 && have+resp.ContentLength > limit {
		f.Close()
		h.discard()
		return nil, fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrTooLarge, h.URL, have+resp.ContentLength, limit)
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, limit-have+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("ota: download %s interrupted after %d bytes (resumes at the next fetch): %w", h.URL, have+n, err)
	}
	if have+n > limit {
		h.discard()
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, h.URL, limit)
	}
	h.mu.Lock()
	h.pendingE = etag
	h.mu.Unlock()
	return os.Open(part)
}

func (h *HTTPSource) discard() {
	_ = os.Remove(filepath.Join(h.Dir, partFile))
	_ = os.Remove(filepath.Join(h.Dir, partETag))
}

// Done implements Source: the bundle is not fetched again (whatever Update
// said: a rejected bundle stays rejected until the server changes it).
func (h *HTTPSource) Done(error) {
	h.mu.Lock()
	e := h.pendingE
	h.mu.Unlock()
	h.discard()
	if e != "" {
		_ = writeAtomic(h.Dir, doneETag, []byte(e+"\n"), "download:done")
	}
}

// Resumed reports how many downloads continued with a Range request.
func (h *HTTPSource) Resumed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.resumed
}
