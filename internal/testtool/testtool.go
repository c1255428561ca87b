// Package testtool holds the helpers that tests of several packages share:
// finding a third-party program the test drives, and a buffer a program's
// output can be written to and read from concurrently. It imports nothing
// of the project, so any package's tests may use it.
package testtool

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// NeedTool returns the path of the program name. If it is not installed the
// test is skipped, except under CI=true, where a missing program fails the
// test: CI installs what the tests need (.ci/run), so a skip there would
// hide a broken runner.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true: .ci/run must install it", name)
		}
		t.Skipf("%s is not installed; skipping (install it to run this test)", name)
	}
	return path
}

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
