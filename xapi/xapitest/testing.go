package xapitest

import (
	"log/slog"
	"testing"
)

// NewTestPool starts a pool for a test and closes it when the test ends.
// Unless opts.Logger is set, the pool logs to the test's output (shown for
// failed tests and with -v). It fails the test if the pool cannot start.
func NewTestPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	p, err := NewPool(opts)
	if err != nil {
		t.Fatalf("xapitest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}
