package xapi

import (
	"errors"
	"io"
	"testing"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// TestWarmOpen: a warm open of a console costs no XAPI call, and a VM that
// rebooted (new console records on another host) or stopped since it was
// cached is looked up again, once.
func TestWarmOpen(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	open := func() error {
		vms, err := c.FindVMs(t.Context(), "web-1")
		if err != nil {
			return err
		}
		vm, err := Choose("web-1", vms)
		if err != nil {
			return err
		}
		conn, err := c.DialConsole(t.Context(), vm, RFB)
		if err != nil {
			return err
		}
		defer conn.Close()
		banner := make([]byte, 12)
		_, err = io.ReadFull(conn, banner)
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	before := p.Calls()
	for range 5 {
		if err := open(); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Calls() - before; n != 0 {
		t.Errorf("5 warm opens made %d XAPI calls, want 0", n)
	}

	// Rebooted onto the member: the cached console location is stale.
	if _, err := p.PowerOn("web-1", 1); err != nil {
		t.Fatal(err)
	}
	if err := open(); err != nil {
		t.Errorf("open after a reboot elsewhere: %v", err)
	}
	// Stopped: the user is told so, not that the console failed.
	if err := p.PowerOff("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := open(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("open after power-off: %v, want ErrNotRunning", err)
	}
}
