package rules

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads e whenever a rule or policy file in dir (*.yaml, *.yml,
// *.rego) changes, until ctx ends. Changes are debounced by 150ms so an
// editor's several writes make one reload. A failed reload keeps the
// running rules and is passed to onErr (nil ignores it). Watch blocks: run
// it in a goroutine the caller owns.
func (e *Engine) Watch(ctx context.Context, dir string, onErr func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rules: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("rules: watch %s: %w", dir, err)
	}
	report := func(err error) {
		if err != nil && onErr != nil {
			onErr(err)
		}
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			switch strings.ToLower(filepath.Ext(ev.Name)) {
			case ".yaml", ".yml", ".rego":
				debounce = time.After(150 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			report(fmt.Errorf("rules: watch %s: %w", dir, err))
		case <-debounce:
			debounce = nil
			report(e.Reload())
		}
	}
}
