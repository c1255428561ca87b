// xenbastion patch: tests of (*channel).WriteInPlace.

package ssh

import (
	"bytes"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
)

// inPlaceBuffer returns data in a buffer with the room WriteInPlace needs.
func inPlaceBuffer(data []byte) []byte {
	buf := make([]byte, ChannelDataHeadroom+len(data), ChannelDataHeadroom+len(data)+ChannelDataTailroom)
	copy(buf[ChannelDataHeadroom:], data)
	return buf
}

// TestWriteInPlace sends data of every packet size through WriteInPlace
// with each kind of cipher. With the AEAD ciphers each write is sealed in
// its buffer, so the data there is gone (ciphertext; Write would have
// copied it out first) and the packet is one write to the connection.
// Other ciphers encrypt the packet where it lies too, as upstream's
// writeCipherPacket does. Data that does not fit a packet or has no room
// after it goes as Write sends it, and the buffer keeps the data. The
// client reads it all, in order.
func TestWriteInPlace(t *testing.T) {
	for _, tc := range []struct {
		cipher string
		aead   bool
	}{
		{CipherAES128GCM, true},
		{CipherChaCha20Poly1305, true},
		{CipherAES128CTR, false},
	} {
		t.Run(tc.cipher, func(t *testing.T) {
			var cw *countWrites
			c, chans := pipePairCipher(t, tc.cipher, func(c net.Conn) net.Conn {
				cw = &countWrites{Conn: c}
				return cw
			})
			w, cch := acceptedPair(t, c, chans)
			var got bytes.Buffer
			read := make(chan error, 1)
			go func() { _, err := io.Copy(&got, cch); read <- err }()

			r := mrand.New(mrand.NewPCG(7, 8))
			var sent []byte
			sizes := []int{1, 15, 16, 17, 1000, channelMaxPacket - 1, channelMaxPacket}
			for range 30 {
				sizes = append(sizes, 1+r.IntN(channelMaxPacket))
			}
			for _, n := range sizes {
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(r.Uint32())
				}
				buf := inPlaceBuffer(data)
				before := cw.n.Load()
				if m, err := w.WriteInPlace(buf); m != n || err != nil {
					t.Fatalf("WriteInPlace of %d bytes = %d, %v", n, m, err)
				}
				if tc.aead && bytes.Equal(buf[ChannelDataHeadroom:], data) {
					t.Fatalf("%d bytes: not sealed in the buffer", n)
				}
				if writes := cw.n.Load() - before; tc.aead && writes != 1 {
					t.Fatalf("%d bytes: %d writes to the connection, want 1", n, writes)
				}
				sent = append(sent, data...)
			}
			// Too big for one packet, and no room after the data: as Write.
			for _, buf := range [][]byte{
				inPlaceBuffer(bytes.Repeat([]byte("big"), channelMaxPacket)),
				append(make([]byte, ChannelDataHeadroom), "no room"...)[: ChannelDataHeadroom+7 : ChannelDataHeadroom+7],
			} {
				data := bytes.Clone(buf[ChannelDataHeadroom:])
				if m, err := w.WriteInPlace(buf); m != len(data) || err != nil {
					t.Fatalf("WriteInPlace of %d bytes = %d, %v", len(data), m, err)
				}
				if !bytes.Equal(buf[ChannelDataHeadroom:], data) {
					t.Fatalf("%d bytes without room for one packet were sealed in place", len(data))
				}
				sent = append(sent, data...)
			}
			w.CloseWrite()
			if err := <-read; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), sent) {
				t.Fatalf("client read %d bytes, want %d in order", got.Len(), len(sent))
			}
		})
	}
}

// TestWriteInPlaceSmallWindow: data bigger than the window the peer has
// left goes as Write sends it, a packet as the window allows, and whole.
func TestWriteInPlaceSmallWindow(t *testing.T) {
	c, chans := pipePair(t)
	m := c.Conn.(*connection).mux
	cch := m.newChannel("x", channelOutbound, nil)
	cch.myWindow = 1000
	if err := m.sendMessage(channelOpenMsg{ChanType: "x", PeersWindow: 1000, MaxPacketSize: cch.maxIncomingPayload, PeersID: cch.localId}); err != nil {
		t.Fatal(err)
	}
	ch, reqs, err := (<-chans).Accept()
	if err != nil {
		t.Fatal(err)
	}
	go DiscardRequests(reqs)
	if _, ok := (<-cch.msg).(*channelOpenConfirmMsg); !ok {
		t.Fatal("no confirmation")
	}
	data := bytes.Repeat([]byte("0123456789"), 300)
	done := make(chan error, 1)
	go func() {
		_, err := ch.(*channel).WriteInPlace(inPlaceBuffer(data))
		ch.CloseWrite()
		done <- err
	}()
	got, err := io.ReadAll(cch)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("client read %d bytes, want %d", len(got), len(data))
	}
}

// TestWriteInPlaceRekey sends 8 MiB through WriteInPlace, in writes of
// every size, while both sides ask for a new key exchange every 256 KiB and
// the client sends data the other way: packets written during a key
// exchange are queued as copies, the others sealed in place with whichever
// keys are current, and all arrive whole and in order.
func TestWriteInPlaceRekey(t *testing.T) {
	for _, cipher := range []string{CipherAES128GCM, CipherChaCha20Poly1305} {
		t.Run(cipher, func(t *testing.T) {
			c, chans := pipePairRekey(t, cipher, 256<<10, nil)
			w, cch := acceptedPair(t, c, chans)
			r := mrand.New(mrand.NewPCG(9, 10))
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			back := bytes.Repeat([]byte("the other way "), 200000)
			var got, gotBack bytes.Buffer
			read := make(chan error, 2)
			go func() { _, err := io.Copy(&got, cch); read <- err }()
			go func() { _, err := io.Copy(&gotBack, w); read <- err }()
			go func() {
				cch.Write(back)
				cch.CloseWrite()
			}()
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(channelMaxPacket))
				if m, err := w.WriteInPlace(inPlaceBuffer(rest[:n])); m != n || err != nil {
					t.Fatalf("WriteInPlace of %d bytes = %d, %v", n, m, err)
				}
				rest = rest[n:]
			}
			w.CloseWrite()
			for range 2 {
				if err := <-read; err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Bytes(), data) || !bytes.Equal(gotBack.Bytes(), back) {
				t.Fatalf("read %d and %d bytes, want %d and %d in order", got.Len(), gotBack.Len(), len(data), len(back))
			}
		})
	}
}

// acceptedPair opens a channel from the client and accepts it on the
// server, returning the server's end and the client's.
func acceptedPair(t *testing.T, c *Client, chans <-chan NewChannel) (*channel, Channel) {
	t.Helper()
	opened := make(chan Channel, 1)
	go func() {
		ch, reqs, err := c.OpenChannel("x", nil)
		if err != nil {
			t.Error(err)
			close(opened)
			return
		}
		go DiscardRequests(reqs)
		opened <- ch
	}()
	ch, reqs, err := (<-chans).Accept()
	if err != nil {
		t.Fatal(err)
	}
	go DiscardRequests(reqs)
	cch := <-opened
	if cch == nil {
		t.FailNow()
	}
	return ch.(*channel), cch
}

// TestWriteInPlaceCounts: a packet sealed in place counts towards the next
// key exchange as any other packet written does.
func TestWriteInPlaceCounts(t *testing.T) {
	c, chans := pipePairRekey(t, CipherAES128GCM, 1<<20, nil)
	ch, cch := acceptedPair(t, c, chans)
	go io.Copy(io.Discard, cch)
	ht := ch.mux.conn.(*handshakeTransport)
	left := func() int64 {
		ht.mu.Lock()
		defer ht.mu.Unlock()
		return ht.writeBytesLeft
	}
	before := left()
	if _, err := ch.WriteInPlace(inPlaceBuffer(make([]byte, 1000))); err != nil {
		t.Fatal(err)
	}
	if counted := before - left(); counted < 9+1000 {
		t.Errorf("a 1,000-byte write counted %d bytes towards the key exchange, want at least %d", counted, 9+1000)
	}
}

// failingConn fails every write once fail is set.
type failingConn struct {
	net.Conn
	fail atomic.Bool
}

func (c *failingConn) Write(p []byte) (int, error) {
	if c.fail.Load() {
		return 0, errors.New("the wire broke")
	}
	return c.Conn.Write(p)
}

// TestWriteInPlaceRefuses: WriteInPlace says no, as Write does, to a
// channel that is not accepted yet or is closed, to a buffer without room
// before the data, and once the connection has failed a write.
func TestWriteInPlaceRefuses(t *testing.T) {
	var fc *failingConn
	c, chans := pipePairRekey(t, CipherAES128GCM, 0, func(c net.Conn) net.Conn {
		fc = &failingConn{Conn: c}
		return fc
	})
	go c.OpenChannel("x", nil)
	undecided := (<-chans).(*channel)
	if _, err := undecided.WriteInPlace(inPlaceBuffer([]byte("early"))); err != errUndecided {
		t.Errorf("before Accept: %v, want %v", err, errUndecided)
	}
	if _, err := undecided.WriteInPlace(make([]byte, ChannelDataHeadroom-1, 100)); err == nil {
		t.Error("a buffer without room before the data was taken")
	}

	ch, cch := acceptedPair(t, c, chans)
	go io.Copy(io.Discard, cch)
	closed, _ := acceptedPair(t, c, chans)
	closed.Close()
	if n, err := closed.WriteInPlace(inPlaceBuffer([]byte("late"))); err == nil {
		t.Errorf("after Close: wrote %d bytes", n)
	}

	fc.fail.Store(true)
	var err error
	for range 3 {
		if _, err = ch.WriteInPlace(inPlaceBuffer(make([]byte, 100))); err != nil {
			break
		}
	}
	if err == nil {
		t.Error("writes went on succeeding after the connection failed one")
	}
}
