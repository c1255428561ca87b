package bastion_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi"
)

// TestAuditSyncFailure: when console.start cannot be synced to disk (the
// audit log here is a pipe, which fsync refuses), no console is relayed: the
// open is refused with a short reason and console.end says why. The opens
// are repeated until both ways of dialling have been taken: the first open
// of the console's host dials it while the sync runs, a later one finds a
// spare connection and sends the CONNECT before the sync.
func TestAuditSyncFailure(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "audit.pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	events := make(chan bastion.Event, 100)
	go func() {
		f, err := os.Open(fifo) // waits for the bastion to open it
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev bastion.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	var pool *connectNowCounter
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) {
		a, err := bastion.OpenAuditLog(fifo)
		if err != nil {
			t.Fatal(err)
		}
		s.Audit = a
		pool = &connectNowCounter{Pool: s.Pools[0], c: s.Pools[0].(*xapi.Client)}
		s.Pools[0] = pool
	}})
	c := b.Dial(t, "alice")
	next := func(kind string) bastion.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Event == kind {
					return ev
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s event", kind)
			}
		}
	}
	for i := 0; i < 2 || pool.sent.Load() == 0; i++ {
		if i == 20 {
			t.Fatal("no open found a spare connection to send the CONNECT at once")
		}
		conn, err := c.Dial("tcp", "web-1:5900")
		if err == nil {
			conn.Close()
			t.Fatalf("open %d: a console was opened with console.start not synced", i+1)
		}
		if !strings.Contains(err.Error(), "cannot write its audit log") {
			t.Errorf("open %d: %v, want the audit log named as the reason", i+1, err)
		}
		start := next(bastion.EventConsoleStart)
		end := next(bastion.EventConsoleEnd)
		if end.Reason != bastion.EndAuditFailed || end.VM != "web-1" || end.ConnID != start.ConnID {
			t.Errorf("open %d: console.end = %+v", i+1, end)
		}
		if *end.BytesOut != 0 || *end.BytesIn != 0 {
			t.Errorf("open %d: %d bytes out, %d in were relayed", i+1, *end.BytesOut, *end.BytesIn)
		}
		time.Sleep(50 * time.Millisecond) // time to dial a spare connection
	}
}

// connectNowCounter counts the opens whose CONNECT went out before the
// audit log's sync.
type connectNowCounter struct {
	bastion.Pool
	c    *xapi.Client
	sent atomic.Int32
}

func (p *connectNowCounter) ConnectNow(ctx context.Context, vm xapi.VM, proto xapi.Protocol) func() (net.Conn, error) {
	f := p.c.ConnectNow(ctx, vm, proto)
	if f != nil {
		p.sent.Add(1)
	}
	return f
}
