package xapi

import (
	"context"
	"crypto/tls"
	"sync"
	"time"
)

// spareTTL bounds how long a pre-dialled console connection waits for its
// CONNECT: a host may drop a connection that sends no request for long.
const spareTTL = 15 * time.Second

// spares keeps one TLS connection, already through its handshake, to each
// console host recently used, so that the next console open there costs
// only the CONNECT round trip: a warm open is then no slower than a direct
// TLS+CONNECT, bastion hop included. A spare that the host has dropped is
// noticed at the CONNECT and replaced by a fresh dial.
type spares struct {
	mu      sync.Mutex // guards the fields below
	conns   map[string]*tls.Conn
	dialing map[string]bool
	closed  bool
	ctx     context.Context // ends the dials in flight at close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // dials in flight
}

// take returns the spare connection to hostport, if one is waiting.
func (s *spares) take(hostport string) *tls.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	tc := s.conns[hostport]
	delete(s.conns, hostport)
	return tc
}

// refill dials a spare to hostport in the background, unless one is
// waiting or on its way.
func (c *Client) refillSpare(hostport string) {
	s := &c.spare
	s.mu.Lock()
	if s.closed || s.conns[hostport] != nil || s.dialing[hostport] {
		s.mu.Unlock()
		return
	}
	if s.dialing == nil {
		s.dialing, s.conns = map[string]bool{}, map[string]*tls.Conn{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	s.dialing[hostport] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		tc, err := c.dialTLS(s.ctx, hostport)
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.dialing, hostport)
		if err != nil {
			return
		}
		if s.closed || s.conns[hostport] != nil {
			tc.Close()
			return
		}
		s.conns[hostport] = tc
		time.AfterFunc(spareTTL, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.conns[hostport] == tc {
				delete(s.conns, hostport)
				tc.Close()
			}
		})
	}()
}

// close drops every spare, stops making new ones and waits for the dials
// in flight (which may write a known-hosts file) to end.
func (s *spares) close() {
	s.mu.Lock()
	s.closed = true
	for hp, tc := range s.conns {
		tc.Close()
		delete(s.conns, hp)
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
