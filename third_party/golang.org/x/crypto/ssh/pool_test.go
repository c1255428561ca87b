// xenbastion patch: tests of the pooled packet buffers, the ciphers that
// read into them and seal whole packets, and channel.WriteTo.

package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

const pooledCap = pooledPacketSize - pooledPacketOffset

// cipherPair returns a writing and a reading packetCipher of algo with the
// same keys.
func cipherPair(t *testing.T, algo string) (w, r packetCipher) {
	t.Helper()
	mode := cipherModes[algo]
	algs := DirectionAlgorithms{Cipher: algo, MAC: HMACSHA256}
	create := func() packetCipher {
		// Fresh slices for each: the GCM cipher counts in its IV.
		key := bytes.Repeat([]byte{7}, mode.keySize)
		iv := bytes.Repeat([]byte{3}, mode.ivSize)
		mac := bytes.Repeat([]byte{5}, 64)
		c, err := mode.create(key, iv, mac, algs)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return create(), create()
}

func randomPacket(r *mrand.Rand, msgType byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	p[0] = msgType
	return p
}

// TestPooledPacketRead writes packets through connectionState and reads
// them back: channel data in a pooled buffer (decrypted there by the AEAD
// ciphers, copied there by the others), anything else and data too big
// for the pool in a buffer of its own; a packet stays whole until it is
// recycled, however many are read meanwhile.
func TestPooledPacketRead(t *testing.T) {
	for _, algo := range []string{CipherAES128GCM, CipherChaCha20Poly1305, CipherAES128CTR} {
		t.Run(algo, func(t *testing.T) {
			wc, rc := cipherPair(t, algo)
			var wire bytes.Buffer
			bw := bufio.NewWriter(&wire)
			br := bufio.NewReader(&wire)
			ws := connectionState{packetCipher: wc}
			rs := connectionState{packetCipher: rc}
			r := mrand.New(mrand.NewPCG(1, 2))
			type sent struct {
				packet []byte
				pooled bool
			}
			var cases []sent
			for _, n := range []int{1, 2, 15, 16, 17, 100, 4095, 4096, 32768 + 9, pooledCap} {
				cases = append(cases, sent{randomPacket(r, msgChannelData, n), true})
			}
			for range 40 {
				cases = append(cases, sent{randomPacket(r, msgChannelData, 1+r.IntN(32768+9)), true})
			}
			cases = append(cases,
				sent{randomPacket(r, msgChannelExtendedData, 1000), true},
				sent{randomPacket(r, msgChannelOpen, 300), false},
				sent{randomPacket(r, msgChannelWindowAdjust, 9), false},
				sent{randomPacket(r, msgChannelData, 48<<10), false}, // too big for the pool
			)
			var held [][]byte
			var want [][]byte
			for i, c := range cases {
				if err := ws.writePacket(bw, &wire, zeroReader{}, bytes.Clone(c.packet), false, true); err != nil { // writing may scramble it
					t.Fatal(err)
				}
				got, err := rs.readPacket(br, false)
				if err != nil {
					t.Fatalf("packet %d (%d bytes): %v", i, len(c.packet), err)
				}
				if !bytes.Equal(got, c.packet) {
					t.Fatalf("packet %d (%d bytes): read back differs: % x, want % x", i, len(c.packet), got[:min(8, len(got))], c.packet[:min(8, len(c.packet))])
				}
				if pooled := cap(got) == pooledCap; pooled != c.pooled {
					t.Fatalf("packet %d (type %d, %d bytes): pooled %v, want %v", i, c.packet[0], len(c.packet), pooled, c.pooled)
				}
				// Hold every other packet across later reads; recycle the rest
				// at once, so that buffers are reused while others are held.
				if i%2 == 0 {
					held, want = append(held, got), append(want, bytes.Clone(got))
				} else {
					recyclePacket(got)
				}
			}
			for i := range held {
				if !bytes.Equal(held[i], want[i]) {
					t.Fatalf("held packet %d changed before it was recycled", i)
				}
				recyclePacket(held[i])
			}
		})
	}
}

// TestSealedPacketCorrupted: a packet sealed by sealPacket and written
// straight to the connection is refused by the reader if a byte changes.
func TestSealedPacketCorrupted(t *testing.T) {
	for _, algo := range []string{CipherAES128GCM, CipherChaCha20Poly1305} {
		for _, n := range []int{1, 1000, 32768} {
			wc, rc := cipherPair(t, algo)
			packet := randomPacket(mrand.New(mrand.NewPCG(3, 4)), msgChannelData, n)
			wire, err := wc.(sealCipher).sealPacket(0, zeroReader{}, packet)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []int{4, len(wire) / 2, len(wire) - 1} {
				bad := bytes.Clone(wire)
				bad[at] ^= 1
				_, _, err := rc.(intoCipher).readCipherPacketInto(0, bytes.NewReader(bad), new(readBuffer))
				if err == nil {
					t.Fatalf("%s, %d bytes: a packet corrupted at byte %d was accepted", algo, n, at)
				}
			}
			got, into, err := rc.(intoCipher).readCipherPacketInto(0, bytes.NewReader(wire), new(readBuffer))
			if err != nil || !into || !bytes.Equal(got, packet) {
				t.Fatalf("%s, %d bytes: intact packet: into %v, err %v", algo, n, into, err)
			}
		}
	}
}

// pipePair connects an SSH client and server over loopback and returns
// the client and the server's incoming channels.
func pipePair(t *testing.T) (*Client, <-chan NewChannel) {
	t.Helper()
	return pipePairWrap(t, nil)
}

// pipePairWrap is pipePair with the server's connection wrapped by wrap,
// if not nil.
func pipePairWrap(t *testing.T, wrap func(net.Conn) net.Conn) (*Client, <-chan NewChannel) {
	t.Helper()
	return pipePairCipher(t, "", wrap)
}

// pipePairCipher is pipePairWrap with the client offering only cipher, if
// not empty.
func pipePairCipher(t *testing.T, cipher string, wrap func(net.Conn) net.Conn) (*Client, <-chan NewChannel) {
	t.Helper()
	return pipePairRekey(t, cipher, 0, wrap)
}

// pipePairRekey is pipePairCipher with both sides asking for a new key
// exchange every rekey bytes, if not 0.
func pipePairRekey(t *testing.T, cipher string, rekey uint64, wrap func(net.Conn) net.Conn) (*Client, <-chan NewChannel) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	chans := make(chan (<-chan NewChannel), 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if wrap != nil {
			c = wrap(c)
		}
		cfg := &ServerConfig{NoClientAuth: true}
		cfg.RekeyThreshold = rekey
		cfg.AddHostKey(signer)
		sc, nc, reqs, err := NewServerConn(c, cfg)
		if err != nil {
			c.Close()
			return
		}
		t.Cleanup(func() { sc.Close() })
		go DiscardRequests(reqs)
		chans <- nc
	}()
	ccfg := &ClientConfig{User: "u", HostKeyCallback: InsecureIgnoreHostKey()}
	ccfg.RekeyThreshold = rekey
	if cipher != "" {
		ccfg.Ciphers = []string{cipher}
	}
	c, err := Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case nc := <-chans:
		return c, nc
	case <-time.After(10 * time.Second):
		t.Fatal("server handshake did not finish")
	}
	return nil, nil
}

// TestChannelWriteTo sends more than the channel window, in writes of all
// sizes, and checks that WriteTo delivers it whole and in order, crediting
// the window as it goes, and returns nil at the client's EOF.
func TestChannelWriteTo(t *testing.T) {
	c, chans := pipePair(t)
	r := mrand.New(mrand.NewPCG(5, 6))
	data := make([]byte, 3*channelWindowSize+12345)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	go func() {
		ch, reqs, err := c.OpenChannel("x", nil)
		if err != nil {
			return
		}
		go DiscardRequests(reqs)
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(70000))
			if _, err := ch.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		ch.CloseWrite()
	}()
	nc := <-chans
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go DiscardRequests(reqs)
	type result struct {
		n   int64
		err error
	}
	var got bytes.Buffer
	done := make(chan result, 1)
	go func() {
		n, err := ch.(io.WriterTo).WriteTo(&got)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		if res.err != nil || res.n != int64(len(data)) {
			t.Fatalf("WriteTo = %d, %v; want %d, nil", res.n, res.err, len(data))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WriteTo did not return: the window was not credited back?")
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("WriteTo delivered different bytes")
	}
}

// failAfter fails the write after the first n bytes.
type failAfter struct{ n int }

var errFull = errors.New("full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

// TestChannelWriteToWriteError: WriteTo stops at the writer's error and
// says how much was written.
func TestChannelWriteToWriteError(t *testing.T) {
	c, chans := pipePair(t)
	go func() {
		ch, reqs, err := c.OpenChannel("x", nil)
		if err != nil {
			return
		}
		go DiscardRequests(reqs)
		ch.Write(make([]byte, 100000))
	}()
	nc := <-chans
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go DiscardRequests(reqs)
	n, err := ch.(io.WriterTo).WriteTo(&failAfter{n: 50000})
	if !errors.Is(err, errFull) || n != 50000 {
		t.Fatalf("WriteTo = %d, %v; want 50000, %v", n, err, errFull)
	}
}

// TestBufferNextAfterRead: data read partly with Read is handed whole by
// next, and next then waits for more or returns io.EOF once closed.
func TestBufferNextAfterRead(t *testing.T) {
	b := newBuffer()
	b.write([]byte("hello, "))
	b.write([]byte("world"))
	p := make([]byte, 3)
	if n, _ := b.Read(p); n != 3 {
		t.Fatalf("Read = %d", n)
	}
	var got []string
	for range 2 {
		buf, _, err := b.next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf))
	}
	if fmt.Sprint(got) != "[lo,  world]" {
		t.Fatalf("next gave %q", got)
	}
	b.eof()
	if _, _, err := b.next(); err != io.EOF {
		t.Fatalf("next after eof: %v", err)
	}
}

// TestNoBufferWhileWaiting: a reader waiting for the next packet (here:
// none comes) holds no pooled buffer; one is taken once a packet arrives.
func TestNoBufferWhileWaiting(t *testing.T) {
	for _, algo := range []string{CipherAES128GCM, CipherChaCha20Poly1305} {
		wc, rc := cipherPair(t, algo)
		var rb readBuffer
		if _, _, err := rc.(intoCipher).readCipherPacketInto(0, bytes.NewReader(nil), &rb); err != io.EOF || rb.pooled != nil {
			t.Fatalf("%s: no packet: err %v, pooled buffer taken %v", algo, err, rb.pooled != nil)
		}
		wire, err := wc.(sealCipher).sealPacket(0, zeroReader{}, []byte{msgChannelData, 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, into, err := rc.(intoCipher).readCipherPacketInto(0, bytes.NewReader(wire), &rb); err != nil || !into || rb.pooled == nil {
			t.Fatalf("%s: a packet: err %v, into %v", algo, err, into)
		}
	}
}

// TestBufferReadContext: a read waiting for data gives up when its context
// ends, takes nothing, and what is written afterwards goes to the next
// read; data already there is returned even if the context has ended.
func TestBufferReadContext(t *testing.T) {
	b := newBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.ReadContext(ctx, make([]byte, 8))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	cancel()
	select {
	case err := <-errc:
		if err != context.Canceled {
			t.Fatalf("ReadContext = %v, want %v", err, context.Canceled)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadContext did not stop when its context ended")
	}
	b.write([]byte("typed"))
	p := make([]byte, 8)
	n, err := b.ReadContext(ctx, p) // ended, but there is data
	if err != nil || string(p[:n]) != "typed" {
		t.Fatalf("ReadContext after the write = %q, %v", p[:n], err)
	}
	b.eof()
	if _, err := b.ReadContext(context.Background(), p); err != io.EOF {
		t.Fatalf("ReadContext at EOF = %v", err)
	}
}

// TestReadPathAllocs: reading a channel data packet, queueing its data in
// a channel's buffer and reading it from there with the same context each
// time allocate nothing once warm (a keystroke's path through the bastion),
// but for chacha20-poly1305 where chacha16 does not run (chachaAllocs).
func TestReadPathAllocs(t *testing.T) {
	for algo, want := range map[string]float64{CipherAES128GCM: 0, CipherChaCha20Poly1305: chachaAllocs()} {
		wc, rc := cipherPair(t, algo)
		ws := connectionState{packetCipher: wc}
		rs := connectionState{packetCipher: rc}
		const n = 200
		var wire bytes.Buffer
		bw := bufio.NewWriter(&wire)
		for range n {
			if err := ws.writePacket(bw, &wire, zeroReader{}, []byte{msgChannelData, 0, 0, 0, 0, 0, 0, 0, 1, 'x'}, false, true); err != nil {
				t.Fatal(err)
			}
		}
		br := bufio.NewReader(&wire)
		b := newBuffer()
		ctx, cancel := context.WithCancel(context.Background())
		p := make([]byte, 16)
		allocs := testing.AllocsPerRun(n-1, func() {
			packet, err := rs.readPacket(br, false)
			if err != nil {
				t.Fatal(err)
			}
			b.writePacket(packet[9:], packet)
			if n, err := b.ReadContext(ctx, p); n != 1 || err != nil {
				t.Fatalf("ReadContext = %d, %v", n, err)
			}
		})
		cancel()
		if allocs > want {
			t.Errorf("%s: %.1f allocations per packet, want %.0f", algo, allocs, want)
		}
	}
}

// TestBufferReadContextNewContext: after one context ends, a read with
// another still waits for data, and is woken when that one ends too.
func TestBufferReadContextNewContext(t *testing.T) {
	b := newBuffer()
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := b.ReadContext(ctx, make([]byte, 8))
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		cancel()
		select {
		case err := <-errc:
			if err != context.Canceled {
				t.Fatalf("ReadContext = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ReadContext did not stop when its context ended")
		}
	}
}

// countWrites counts the writes to a connection.
type countWrites struct {
	net.Conn
	n atomic.Int64
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestAcceptWithData: the confirmation and the first data go out in one
// write to the connection, data beyond the peer's maximum packet is left
// to the caller, and the rest of the channel works as after Accept.
func TestAcceptWithData(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int // of the first data
		wantSent int
	}{
		{"banner", 12, 12},
		{"none", 0, 0},
		{"over the maximum packet", channelMaxPacket + 100, channelMaxPacket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cw *countWrites
			c, chans := pipePairWrap(t, func(c net.Conn) net.Conn {
				cw = &countWrites{Conn: c}
				return cw
			})
			first := bytes.Repeat([]byte("RFB 003.008\n"), tc.size/12+1)[:tc.size]
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
			nc := <-chans
			before := cw.n.Load()
			ch, reqs, n, err := nc.(*channel).AcceptWithData(first)
			if err != nil {
				t.Fatal(err)
			}
			if writes := cw.n.Load() - before; writes != 1 {
				t.Errorf("AcceptWithData made %d writes to the connection, want 1", writes)
			}
			go DiscardRequests(reqs)
			if n != tc.wantSent {
				t.Fatalf("AcceptWithData sent %d bytes, want %d", n, tc.wantSent)
			}
			if _, _, _, err := nc.(*channel).AcceptWithData(nil); err != errDecidedAlready {
				t.Errorf("second AcceptWithData: %v, want errDecidedAlready", err)
			}
			cch := <-opened
			if cch == nil {
				t.FailNow()
			}
			go func() {
				ch.Write(first[n:])
				ch.Write([]byte("more"))
				ch.CloseWrite()
			}()
			got, err := io.ReadAll(cch)
			if err != nil {
				t.Fatal(err)
			}
			if want := append(bytes.Clone(first), "more"...); !bytes.Equal(got, want) {
				t.Fatalf("client read %d bytes, want %d in order", len(got), len(want))
			}
			// And the other way.
			go func() { cch.Write([]byte("key")); cch.CloseWrite() }()
			if got, err := io.ReadAll(ch); err != nil || string(got) != "key" {
				t.Fatalf("server read %q, %v", got, err)
			}
		})
	}
}

// TestAcceptWithDataNoWindow: a peer that opens a channel with no window
// gets the confirmation and no data, and AcceptWithData does not wait.
func TestAcceptWithDataNoWindow(t *testing.T) {
	c, chans := pipePair(t)
	m := c.Conn.(*connection).mux
	cch := m.newChannel("x", channelOutbound, nil)
	cch.myWindow = 0
	if err := m.sendMessage(channelOpenMsg{ChanType: "x", PeersWindow: 0, MaxPacketSize: cch.maxIncomingPayload, PeersID: cch.localId}); err != nil {
		t.Fatal(err)
	}
	nc := <-chans
	done := make(chan int, 1)
	go func() {
		_, reqs, n, err := nc.(*channel).AcceptWithData([]byte("RFB 003.008\n"))
		if err != nil {
			t.Error(err)
		}
		go DiscardRequests(reqs)
		done <- n
	}()
	select {
	case n := <-done:
		if n != 0 {
			t.Errorf("sent %d bytes into a zero window", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AcceptWithData waited for window")
	}
	if _, ok := (<-cch.msg).(*channelOpenConfirmMsg); !ok {
		t.Fatal("no confirmation")
	}
}

// TestAcceptWithDataConnectionGone: once the connection has gone,
// AcceptWithData fails as Accept does.
func TestAcceptWithDataConnectionGone(t *testing.T) {
	c, chans := pipePair(t)
	go c.OpenChannel("x", nil)
	nc := (<-chans).(*channel)
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		nc.writeMu.Lock()
		gone := nc.sentClose
		nc.writeMu.Unlock()
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the connection go")
		}
		time.Sleep(time.Millisecond)
	}
	if _, _, _, err := nc.AcceptWithData([]byte("RFB 003.008\n")); err == nil {
		t.Fatal("AcceptWithData on a closed connection succeeded")
	}
}

// heapInUse returns the heap in use after two collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestUnreadSmallDataMemory: data the server has not read yet costs memory
// in proportion to the data, not a pooled 36 KiB buffer per packet: a
// client that sends 1-byte packets, of data or of stderr (which a server
// never reads), must not pin 40 KiB of heap per byte of its window.
func TestUnreadSmallDataMemory(t *testing.T) {
	for _, cipher := range []string{CipherAES128GCM, CipherChaCha20Poly1305, CipherAES128CTR} {
		for _, stderr := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stderr %v", cipher, stderr), func(t *testing.T) {
				client, chans := pipePairCipher(t, cipher, nil)
				accepted := make(chan Channel, 1)
				go func() {
					ch, reqs, err := (<-chans).Accept()
					if err == nil {
						go DiscardRequests(reqs)
						accepted <- ch
					}
				}()
				cch, reqs, err := client.OpenChannel("session", nil)
				if err != nil {
					t.Fatal(err)
				}
				go DiscardRequests(reqs)
				sch := (<-accepted).(*channel)
				var w io.Writer = cch
				if stderr {
					w = cch.Stderr()
				}
				before := heapInUse()
				const n = 3000
				for range n {
					if _, err := w.Write([]byte{'x'}); err != nil {
						t.Fatal(err)
					}
				}
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					sch.windowMu.Lock()
					window := sch.myWindow
					sch.windowMu.Unlock()
					if window == channelWindowSize-n {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the server received %d of %d bytes", channelWindowSize-window, n)
					}
				}
				if grew := int64(heapInUse()) - int64(before); grew > 8<<20 {
					t.Errorf("the heap grew by %d MiB for %d bytes of unread data", grew>>20, n)
				}
			})
		}
	}
}

// TestBufferHoldsFewPooledPackets: a buffer keeps small data in its pooled
// packet for maxPooled elements at most and copies the rest out; big data
// stays in its packet; the count goes back to 0 as the data is read, by
// ReadContext or by next (WriteTo's way).
func TestBufferHoldsFewPooledPackets(t *testing.T) {
	pooled := func(n int) []byte {
		return packetPool.Get().(*pooledPacket)[pooledPacketOffset:][:n]
	}
	b := newBuffer()
	for range 10 {
		p := pooled(10)
		b.writePacket(p[9:], p)
	}
	big := pooled(minPooledData + 9)
	b.writePacket(big[9:], big)
	held := 0
	for e := b.head.next; e != nil; e = e.next {
		if e.packet != nil {
			held++
		}
	}
	if held != maxPooled+1 || b.pooled != held {
		t.Fatalf("%d elements hold a packet (count %d), want %d: %d small, and the big one", held, b.pooled, maxPooled+1, maxPooled)
	}
	for range 5 {
		if _, _, err := b.next(); err != nil {
			t.Fatal(err)
		}
	}
	p := make([]byte, minPooledData+100)
	for b.head != b.tail || len(b.head.buf) > 0 {
		if _, err := b.ReadContext(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if b.pooled != 0 {
		t.Errorf("%d pooled packets counted after everything was read", b.pooled)
	}
}

// TestDiscardClientStderr: a server with DiscardClientStderr credits a
// client's stderr back and drops it, so a client can send more than the
// window of it to a server that never reads it; without, its writes stop
// at the window, the data held for the channel's life.
func TestDiscardClientStderr(t *testing.T) {
	for _, discard := range []bool{true, false} {
		t.Run(fmt.Sprint("discard ", discard), func(t *testing.T) {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := NewSignerFromKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			// Loopback TCP: over net.Pipe, whose writes wait for a reader,
			// the two sides' first writes would wait for each other.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c2, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c1, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				cfg := &ServerConfig{NoClientAuth: true, DiscardClientStderr: discard}
				cfg.AddHostKey(signer)
				sc, chans, reqs, err := NewServerConn(c1, cfg)
				if err != nil {
					return
				}
				t.Cleanup(func() { sc.Close() })
				go DiscardRequests(reqs)
				for nc := range chans {
					if ch, reqs, err := nc.Accept(); err == nil {
						go DiscardRequests(reqs)
						t.Cleanup(func() { ch.Close() })
					}
				}
			}()
			cc, chans, reqs, err := NewClientConn(c2, "pipe", &ClientConfig{User: "u", HostKeyCallback: InsecureIgnoreHostKey()})
			if err != nil {
				t.Fatal(err)
			}
			client := NewClient(cc, chans, reqs)
			t.Cleanup(func() { client.Close() })
			ch, creqs, err := client.OpenChannel("session", nil)
			if err != nil {
				t.Fatal(err)
			}
			go DiscardRequests(creqs)
			done := make(chan error, 1)
			go func() {
				_, err := ch.Stderr().Write(make([]byte, 3*channelWindowSize/2))
				done <- err
			}()
			select {
			case err := <-done:
				if !discard {
					t.Errorf("a client wrote 1.5 windows of stderr that nobody read (%v)", err)
				} else if err != nil {
					t.Error(err)
				}
			case <-time.After(3 * time.Second):
				if discard {
					t.Error("the client's stderr writes stopped at the window with DiscardClientStderr")
				}
			}
		})
	}
}
