package ssh

// Tests of xenbastion patch 10: the server's read loop hands channel data
// to the channel itself when nothing is queued for the mux.

import (
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"
)

// idleConn is a packetConn that never delivers a packet.
type idleConn struct {
	once sync.Once
	done chan struct{}
}

func (c *idleConn) writePacket([]byte) error { return nil }
func (c *idleConn) readPacket() ([]byte, error) {
	<-c.done
	return nil, io.EOF
}
func (c *idleConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// TestDirectDataNeedsEstablished: data for a channel that is not yet
// established is left to the mux, which drops it, as upstream does; once
// established, the read loop's handler delivers it.
func TestDirectDataNeedsEstablished(t *testing.T) {
	conn := &idleConn{done: make(chan struct{})}
	m := newMux(conn)
	defer conn.Close()
	ch := m.newChannel("x", channelInbound, nil)
	data := func(s string) []byte {
		return Marshal(&channelDataMsg{PeersID: ch.localId, Length: uint32(len(s)), Rest: []byte(s)})
	}
	if m.handleDataDirect(data("early")) {
		t.Fatal("data for a channel not yet established was delivered")
	}
	if m.handleDataDirect(data("")[:8]) {
		t.Fatal("a malformed data packet was delivered")
	}
	ch.established.Store(true)
	ch.decided = true // as Accept does
	if !m.handleDataDirect(data("late")) {
		t.Fatal("data for an established channel was not delivered")
	}
	buf := make([]byte, 16)
	n, err := ch.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("read %q, %v; want only the data sent once established", buf[:n], err)
	}
}

// TestDirectDataKeepsOrder sends numbered data packets with channel
// requests among them, while the server takes the requests slowly, so
// that the mux blocks and packets queue behind it: the data must arrive
// whole and in order, whichever way each packet went.
func TestDirectDataKeepsOrder(t *testing.T) {
	c, chans := pipePair(t)
	const packets = 3000
	sent := make(chan error, 1)
	go func() {
		ch, reqs, err := c.OpenChannel("x", nil)
		if err != nil {
			sent <- err
			return
		}
		go DiscardRequests(reqs)
		var b [8]byte
		for i := range packets {
			binary.BigEndian.PutUint64(b[:], uint64(i))
			if _, err := ch.Write(b[:]); err != nil {
				sent <- err
				return
			}
			if i%5 == 0 {
				if _, err := ch.SendRequest("x", false, nil); err != nil {
					sent <- err
					return
				}
			}
		}
		sent <- ch.CloseWrite()
	}()
	nc := <-chans
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	requests := make(chan int, 1)
	go func() {
		n := 0
		for r := range reqs {
			if n%50 == 0 {
				time.Sleep(2 * time.Millisecond) // let the mux block on a full queue
			}
			r.Reply(false, nil)
			n++
		}
		requests <- n
	}()
	got, err := io.ReadAll(ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got) != 8*packets {
		t.Fatalf("got %d bytes, want %d", len(got), 8*packets)
	}
	for i := range packets {
		if v := binary.BigEndian.Uint64(got[8*i:]); v != uint64(i) {
			t.Fatalf("packet %d carries %d: the data was reordered", i, v)
		}
	}
	ch.Close()
	select {
	case n := <-requests:
		if want := (packets + 4) / 5; n != want {
			t.Errorf("server saw %d requests, want %d", n, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("the requests did not end with the channel")
	}
}

// TestDirectDataAfterRequest: data sent after a channel request is
// readable only once the request has been delivered, as with the mux
// alone: data the read loop hands over itself must not overtake a packet
// queued for the mux.
func TestDirectDataAfterRequest(t *testing.T) {
	c, chans := pipePair(t)
	const rounds = 500
	sent := make(chan error, 1)
	go func() {
		ch, reqs, err := c.OpenChannel("x", nil)
		if err != nil {
			sent <- err
			return
		}
		go DiscardRequests(reqs)
		var b [8]byte
		for i := range rounds {
			binary.BigEndian.PutUint64(b[:], uint64(i))
			if _, err := ch.SendRequest("x", false, b[:]); err != nil {
				sent <- err
				return
			}
			if _, err := ch.Write(b[:]); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	nc := <-chans
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	seen := 0
	var b [8]byte
	for i := range rounds {
		if _, err := io.ReadFull(ch, b[:]); err != nil {
			t.Fatal(err)
		}
		for more := true; more; {
			select {
			case <-reqs:
				seen++
			default:
				more = false
			}
		}
		if seen <= i {
			t.Fatalf("data %d was readable before its request: %d requests delivered", i, seen)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}
