package bastion_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xenbastion/xenbastion/bastion"
)

// TestAuditReopen: logrotate renames the audit log and the bastion
// reopens it (on SIGHUP): records written before go to the renamed file,
// those after to a new file at the path, and writes that sync while the
// files change hands neither fail nor get lost.
func TestAuditReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	a, err := bastion.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Write(bastion.Event{Event: bastion.EventAuthSuccess, User: "before"}, true); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(bastion.Event{Event: bastion.EventAuthSuccess, User: "after"}, true); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{path + ".1": `"user":"before"`, path: `"user":"after"`} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Errorf("%s: %q, want one record with %s", filepath.Base(file), data, want)
		}
	}

	// Rotations while records are written and synced.
	const writers, each, rotations = 4, 200, 20
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if err := a.Write(bastion.Event{Event: bastion.EventAuthSuccess}, true); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range rotations {
		if err := os.Rename(path, filepath.Join(dir, "rotated."+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
		if err := a.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(data), "\n")
	}
	if want := 2 + writers*each; n != want {
		t.Errorf("%d records in %d files, want %d", n, len(files), want)
	}
}

// TestAuditReopenSyncFails: a sync that races a Reopen reports how syncing
// the old file went, not success. /dev/null refuses every fsync.
func TestAuditReopenSyncFails(t *testing.T) {
	t.Parallel()
	a, err := bastion.OpenAuditLog(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Sync(); err == nil {
		t.Skip("this system's /dev/null takes fsync")
	}
	var synced atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				if a.Write(bastion.Event{Event: bastion.EventAuthSuccess}, true) == nil {
					synced.Add(1)
				}
			}
		})
	}
	for range 50 {
		if err := a.Reopen(); err == nil || !strings.Contains(err.Error(), "reopened, but the old file") {
			t.Errorf("Reopen: %v", err)
		}
	}
	wg.Wait()
	if n := synced.Load(); n != 0 {
		t.Errorf("%d synced writes reported success, though no fsync succeeded", n)
	}
}
