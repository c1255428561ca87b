package bastion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// TestShutdownBeforeServe: a Shutdown that comes before Serve has started
// (a signal during start-up) must not leave Serve waiting for ever.
func TestShutdownBeforeServe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		delay time.Duration
	}{{"before", 0}, {"racing", time.Microsecond}, {"after", 50 * time.Millisecond}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{}
			served := make(chan error, 1)
			start := func() { served <- s.Serve(l) }
			if tt.delay == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
				go start()
			} else {
				go start()
				time.Sleep(tt.delay)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-served:
				if !errors.Is(err, ErrServerClosed) {
					t.Errorf("Serve = %v, want ErrServerClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after Shutdown")
			}
		})
	}
}

// fakeContext is the gliderlabs context of a connection whose state is st.
type fakeContext struct {
	gliderssh.Context
	st *connState
}

func (c fakeContext) Value(key any) any {
	if key == connStateKey {
		return c.st
	}
	return nil
}

// fakeSession is a session that runs cmd.
type fakeSession struct {
	gliderssh.Session
	ctx    gliderssh.Context
	cmd    string
	stderr bytes.Buffer
	code   int
}

func (f *fakeSession) RawCommand() string         { return f.cmd }
func (f *fakeSession) Context() gliderssh.Context { return f.ctx }
func (f *fakeSession) Stderr() io.ReadWriter      { return &f.stderr }
func (f *fakeSession) Exit(code int) error        { f.code = code; return nil }

// TestRefusedWhileShuttingDown: a console asked for once the shutdown has
// begun is refused, and the refusal has its console.denied record, as
// every refusal does; so does a forward whose request is malformed.
func TestRefusedWhileShuttingDown(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	audit, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	s := &Server{Audit: audit}
	s.init()
	st := &connState{id: "c1", remote: "192.0.2.7:50000", user: "alice"}
	ctx := fakeContext{st: st}

	bad := &fakeNewChannel{extra: []byte{0, 0, 0, 9, 'w'}}
	s.handleDirectTCPIP(nil, nil, bad, ctx)

	s.beginClose()
	fwd := &fakeNewChannel{extra: gossh.Marshal(directTCPIP{DestAddr: "web-1", DestPort: VNCPort, OriginAddr: "127.0.0.1", OriginPort: 1})}
	s.handleDirectTCPIP(nil, nil, fwd, ctx)
	sess := &fakeSession{ctx: ctx, cmd: "console web 2"}
	s.handleSession(sess)
	list := &fakeSession{ctx: ctx, cmd: "list"}
	s.handleSession(list)

	if bad.rejected != "malformed direct-tcpip request" || fwd.rejected != msgShuttingDown {
		t.Errorf("rejected with %q and %q", bad.rejected, fwd.rejected)
	}
	if got := sess.stderr.String(); sess.code != exitError || got != "xenbastion: the bastion is shutting down\n" {
		t.Errorf("console: exit %d, %q", sess.code, got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.Lines(string(data)) {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %q %s %s", ev.Event, ev.User, ev.Target, ev.Via, ev.Reason))
	}
	want := []string{
		`console.denied alice "" forward malformed target`,
		`console.denied alice "web-1" forward server shutdown`,
		`console.denied alice "web 2" command server shutdown`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
