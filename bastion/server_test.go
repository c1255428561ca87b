package bastion

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
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
