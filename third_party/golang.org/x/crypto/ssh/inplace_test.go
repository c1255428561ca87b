// xenbastion patch: tests of (*channel).WriteInPlace.

package ssh

import (
	"bytes"
	"io"
	mrand "math/rand/v2"
	"net"
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
			var got bytes.Buffer
			read := make(chan error, 1)
			go func() { _, err := io.Copy(&got, cch); read <- err }()

			r := mrand.New(mrand.NewPCG(7, 8))
			var sent []byte
			sizes := []int{1, 15, 16, 17, 1000, channelMaxPacket - 1, channelMaxPacket}
			for range 30 {
				sizes = append(sizes, 1+r.IntN(channelMaxPacket))
			}
			w := ch.(*channel)
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
			ch.CloseWrite()
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
			r := mrand.New(mrand.NewPCG(9, 10))
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			back := bytes.Repeat([]byte("the other way "), 200000)
			var got, gotBack bytes.Buffer
			read := make(chan error, 2)
			go func() { _, err := io.Copy(&got, cch); read <- err }()
			go func() { _, err := io.Copy(&gotBack, ch); read <- err }()
			go func() {
				cch.Write(back)
				cch.CloseWrite()
			}()
			w := ch.(*channel)
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(channelMaxPacket))
				if m, err := w.WriteInPlace(inPlaceBuffer(rest[:n])); m != n || err != nil {
					t.Fatalf("WriteInPlace of %d bytes = %d, %v", n, m, err)
				}
				rest = rest[n:]
			}
			ch.CloseWrite()
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
