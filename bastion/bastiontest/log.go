package bastiontest

import (
	"log/slog"
	"sync"
	"testing"
)

// testLogger sends the server's logs to the test's log, shown on failure
// or with -v. Call it before anything that registers a cleanup that may
// log: its own cleanup runs last and drops what comes later, since
// t.Log after the test ends panics.
func testLogger(t testing.TB) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct {
	t    testing.TB
	mu   sync.Mutex // guards done
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}
