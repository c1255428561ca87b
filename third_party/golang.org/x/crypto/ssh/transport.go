// Copyright 2011 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"unsafe"
)

// debugTransport if set, will print packet types as they go over the
// wire. No message decoding is done, to minimize the impact on timing.
const debugTransport = false

// packetConn represents a transport that implements packet based
// operations.
type packetConn interface {
	// Encrypt and send a packet of data to the remote peer.
	writePacket(packet []byte) error

	// Read a packet from the connection. The read is blocking,
	// i.e. if error is nil, then the returned byte slice is
	// always non-empty.
	readPacket() ([]byte, error)

	// Close closes the write-side of the connection.
	Close() error
}

// transport is the keyingTransport that implements the SSH packet
// protocol.
type transport struct {
	reader connectionState
	writer connectionState

	bufReader *bufio.Reader
	bufWriter *bufio.Writer
	conn      io.Writer // under bufWriter (xenbastion patch, see sealCipher)
	rand      io.Reader
	isClient  bool
	io.Closer

	strictMode     bool
	initialKEXDone bool
}

// packetCipher represents a combination of SSH encryption/MAC
// protocol.  A single instance should be used for one direction only.
type packetCipher interface {
	// writeCipherPacket encrypts the packet and writes it to w. The
	// contents of the packet are generally scrambled.
	writeCipherPacket(seqnum uint32, w io.Writer, rand io.Reader, packet []byte) error

	// readCipherPacket reads and decrypts a packet of data. The
	// returned packet may be overwritten by future calls of
	// readPacket.
	readCipherPacket(seqnum uint32, r io.Reader) ([]byte, error)
}

// xenbastion patch: the AEAD ciphers that carry nearly all traffic
// (aes-gcm, chacha20-poly1305) decrypt channel data in place in a pooled
// buffer and encrypt into one buffer written whole, so that a packet is
// not copied once more on each side.

// intoCipher is a packetCipher that can read a packet into a buffer the
// caller gives.
type intoCipher interface {
	// readCipherPacketInto is readCipherPacket, but once the packet's size
	// is known it asks buf for a buffer of that size and, if given one
	// (into is then true), reads and decrypts the packet there: the payload
	// returned is then in buf's buffer from pooledPacketOffset on. A packet
	// that buf has no room for is read as readCipherPacket reads it.
	readCipherPacketInto(seqnum uint32, r io.Reader, buf *readBuffer) (packet []byte, into bool, err error)
}

// readBuffer gives a packet that is being read a pooled buffer, asked for
// only once the packet has begun to arrive: a connection waiting for its
// next packet holds none.
type readBuffer struct{ pooled *pooledPacket }

// get returns a pooled buffer of at least n bytes, or nil if n is more than
// a pooled buffer holds.
func (b *readBuffer) get(n int) []byte {
	if b == nil || n > pooledPacketSize {
		return nil
	}
	if b.pooled == nil {
		b.pooled = packetPool.Get().(*pooledPacket)
	}
	return b.pooled[:]
}

// sealCipher is a packetCipher that can return a whole encrypted packet
// (the AEAD ciphers; xenbastion patch).
type sealCipher interface {
	// sealPacket encrypts packet and returns it as it goes on the wire,
	// in a buffer that the next call reuses.
	sealPacket(seqnum uint32, rand io.Reader, packet []byte) ([]byte, error)
	// sealInPlace seals the packet at buf[packetHeadroom:][:n], with
	// packetTailroom bytes of room after it in buf, and returns the
	// packet as it goes on the wire: a prefix of buf (see
	// (*channel).WriteInPlace).
	sealInPlace(seqnum uint32, rand io.Reader, buf []byte, n int) ([]byte, error)
}

// connectionState represents one side (read or write) of the
// connection. This is necessary because each direction has its own
// keys, and can even have its own algorithms
type connectionState struct {
	packetCipher
	seqNum           uint32
	dir              direction
	pendingKeyChange chan packetCipher
	rb               readBuffer // for readPacket (xenbastion patch)
}

func (t *transport) setStrictMode() error {
	if t.reader.seqNum != 1 {
		return errors.New("ssh: sequence number != 1 when strict KEX mode requested")
	}
	t.strictMode = true
	return nil
}

func (t *transport) setInitialKEXDone() {
	t.initialKEXDone = true
}

// prepareKeyChange sets up key material for a keychange. The key changes in
// both directions are triggered by reading and writing a msgNewKey packet
// respectively.
func (t *transport) prepareKeyChange(algs *NegotiatedAlgorithms, kexResult *kexResult) error {
	ciph, err := newPacketCipher(t.reader.dir, algs.Read, kexResult)
	if err != nil {
		return err
	}
	t.reader.pendingKeyChange <- ciph

	ciph, err = newPacketCipher(t.writer.dir, algs.Write, kexResult)
	if err != nil {
		return err
	}
	t.writer.pendingKeyChange <- ciph

	return nil
}

func (t *transport) printPacket(p []byte, write bool) {
	if len(p) == 0 {
		return
	}
	who := "server"
	if t.isClient {
		who = "client"
	}
	what := "read"
	if write {
		what = "write"
	}

	log.Println(what, who, p[0])
}

// Read and decrypt next packet.
func (t *transport) readPacket() (p []byte, err error) {
	for {
		p, err = t.reader.readPacket(t.bufReader, t.strictMode)
		if err != nil {
			break
		}
		// in strict mode we pass through DEBUG and IGNORE packets only during the initial KEX
		if len(p) == 0 || (t.strictMode && !t.initialKEXDone) || (p[0] != msgIgnore && p[0] != msgDebug) {
			break
		}
	}
	if debugTransport {
		t.printPacket(p, false)
	}

	return p, err
}

func (s *connectionState) readPacket(r *bufio.Reader, strictMode bool) ([]byte, error) {
	var packet []byte
	var err error
	// pooled, if not nil, holds packet (xenbastion patch).
	var pooled *pooledPacket
	if c, ok := s.packetCipher.(intoCipher); ok {
		var into bool
		s.rb.pooled = nil
		packet, into, err = c.readCipherPacketInto(s.seqNum, r, &s.rb)
		if pooled = s.rb.pooled; pooled != nil && !into {
			packetPool.Put(pooled)
			pooled = nil
		}
	} else {
		packet, err = s.packetCipher.readCipherPacket(s.seqNum, r)
	}
	s.seqNum++
	if err == nil && len(packet) == 0 {
		err = errors.New("ssh: zero length packet")
	}

	if len(packet) > 0 {
		switch packet[0] {
		case msgNewKeys:
			select {
			case cipher := <-s.pendingKeyChange:
				s.packetCipher = cipher
				if strictMode {
					s.seqNum = 0
				}
			default:
				return nil, errors.New("ssh: got bogus newkeys message")
			}

		case msgDisconnect:
			// Transform a disconnect message into an
			// error. Since this is lowest level at which
			// we interpret message types, doing it here
			// ensures that we don't have to handle it
			// elsewhere.
			var msg disconnectMsg
			if err := Unmarshal(packet, &msg); err != nil {
				return nil, err
			}
			return nil, &msg
		}
	}

	// xenbastion patch: channel data, the bulk of the traffic, stays in (or
	// is copied into) a pooled buffer that the channel's reader gives back
	// once it has used the data (see recyclePacket). Anything else may be
	// kept for long (a channel keeps its open request's data), so it gets
	// a buffer of its own size.
	channelData := len(packet) > 0 && (packet[0] == msgChannelData || packet[0] == msgChannelExtendedData)
	if pooled != nil && channelData && err == nil {
		return packet, nil
	}
	// The packet may point to an internal buffer, so copy the
	// packet out here.
	var fresh []byte
	if channelData && len(packet) <= pooledPacketSize-pooledPacketOffset {
		fresh = packetPool.Get().(*pooledPacket)[pooledPacketOffset:][:len(packet)]
	} else {
		fresh = make([]byte, len(packet))
	}
	copy(fresh, packet)
	if pooled != nil {
		packetPool.Put(pooled)
	}

	return fresh, err
}

// pooledPacketSize is the size of the pooled buffers channel data packets
// are read into: a packet with a 32 KiB payload, its header and MAC.
const pooledPacketSize = 36 << 10

// pooledPacketOffset is where the payload starts in a pooled buffer that a
// packet was decrypted in: after the length (4 bytes) and the padding
// length (1). A pooled payload's capacity, pooledPacketSize-
// pooledPacketOffset, is odd; the packets readPacket returns that are not
// pooled come from make([]byte, len(packet)), whose capacity is a size
// class (a multiple of 8 bytes at this size), so a packet with that
// capacity is known to be in a pooled buffer. Only packets readPacket
// returned may be given to recyclePacket.
const pooledPacketOffset = 5

// pooledPacket is a pooled buffer. The pool holds pointers to arrays, not
// slices, so that putting one back allocates nothing.
type pooledPacket [pooledPacketSize]byte

var packetPool = sync.Pool{New: func() any { return new(pooledPacket) }}

// recyclePacket gives a channel data packet's buffer back to the pool, if
// it came from there. Nothing may use the packet afterwards.
func recyclePacket(packet []byte) {
	if cap(packet) != pooledPacketSize-pooledPacketOffset {
		return
	}
	// The packet is buf[pooledPacketOffset:] of a pooled buf: step back to
	// the start of the same allocation.
	start := unsafe.Add(unsafe.Pointer(unsafe.SliceData(packet)), -pooledPacketOffset)
	packetPool.Put((*pooledPacket)(start))
}

func (t *transport) writePacket(packet []byte) error {
	if debugTransport {
		t.printPacket(packet, true)
	}
	return t.writer.writePacket(t.bufWriter, t.conn, t.rand, packet, t.strictMode, true)
}

// writePackets sends packets in order, with one write to the connection
// as far as the write buffer holds them (xenbastion patch: a channel's
// confirmation and its first data reach the peer together).
func (t *transport) writePackets(packets [][]byte) error {
	for i, p := range packets {
		if debugTransport {
			t.printPacket(p, true)
		}
		if err := t.writer.writePacket(t.bufWriter, t.conn, t.rand, p, t.strictMode, i == len(packets)-1); err != nil {
			return err
		}
	}
	return nil
}

// writePacketInPlace sends the connection-layer packet at
// buf[packetHeadroom:][:n] (xenbastion patch, see (*channel).WriteInPlace).
func (t *transport) writePacketInPlace(buf []byte, n int) error {
	if debugTransport {
		t.printPacket(buf[packetHeadroom:packetHeadroom+n], true)
	}
	return t.writer.writePacketInPlace(t.bufWriter, t.conn, t.rand, buf, n, t.strictMode)
}

// writePacketInPlace is writePacket for the packet at
// buf[packetHeadroom:][:n], which a cipher that can seals where it lies,
// overwriting buf, and writes straight to the connection; otherwise it
// goes as writePacket sends it. It must not be a msgNewKeys.
func (s *connectionState) writePacketInPlace(w *bufio.Writer, conn io.Writer, rand io.Reader, buf []byte, n int, strictMode bool) error {
	c, ok := s.packetCipher.(sealCipher)
	if !ok || w.Buffered() != 0 || cap(buf) < packetHeadroom+n+packetTailroom {
		return s.writePacket(w, conn, rand, buf[packetHeadroom:packetHeadroom+n], strictMode, true)
	}
	wire, err := c.sealInPlace(s.seqNum, rand, buf, n)
	if err != nil {
		return err
	}
	if _, err := conn.Write(wire); err != nil {
		return err
	}
	s.seqNum++
	return nil
}

// writePacket seals packet and writes it; unless flush is set, it is left
// in w for the next packet's write.
func (s *connectionState) writePacket(w *bufio.Writer, conn io.Writer, rand io.Reader, packet []byte, strictMode, flush bool) error {
	changeKeys := len(packet) > 0 && packet[0] == msgNewKeys

	// xenbastion patch: a cipher that returns the whole packet has it
	// written straight to the connection (when w is empty: it is flushed
	// after every packet but those written together by writePackets).
	if c, ok := s.packetCipher.(sealCipher); ok && flush && w.Buffered() == 0 {
		wire, err := c.sealPacket(s.seqNum, rand, packet)
		if err != nil {
			return err
		}
		if _, err := conn.Write(wire); err != nil {
			return err
		}
	} else {
		err := s.packetCipher.writeCipherPacket(s.seqNum, w, rand, packet)
		if err != nil {
			return err
		}
		if flush {
			if err = w.Flush(); err != nil {
				return err
			}
		}
	}
	s.seqNum++
	if changeKeys {
		select {
		case cipher := <-s.pendingKeyChange:
			s.packetCipher = cipher
			if strictMode {
				s.seqNum = 0
			}
		default:
			panic("ssh: no key material for msgNewKeys")
		}
	}
	return nil
}

func newTransport(rwc io.ReadWriteCloser, rand io.Reader, isClient bool) *transport {
	t := &transport{
		bufReader: bufio.NewReader(rwc),
		// Room for a whole 32 KiB channel packet (xenbastion patch: the 4 KiB
		// split every 32 KiB packet into two write system calls).
		bufWriter: bufio.NewWriterSize(rwc, 40<<10),
		conn:      rwc,
		rand:      rand,
		reader: connectionState{
			packetCipher:     &streamPacketCipher{cipher: noneCipher{}},
			pendingKeyChange: make(chan packetCipher, 1),
		},
		writer: connectionState{
			packetCipher:     &streamPacketCipher{cipher: noneCipher{}},
			pendingKeyChange: make(chan packetCipher, 1),
		},
		Closer: rwc,
	}
	t.isClient = isClient

	if isClient {
		t.reader.dir = serverKeys
		t.writer.dir = clientKeys
	} else {
		t.reader.dir = clientKeys
		t.writer.dir = serverKeys
	}

	return t
}

type direction struct {
	ivTag     []byte
	keyTag    []byte
	macKeyTag []byte
}

var (
	serverKeys = direction{[]byte{'B'}, []byte{'D'}, []byte{'F'}}
	clientKeys = direction{[]byte{'A'}, []byte{'C'}, []byte{'E'}}
)

// setupKeys sets the cipher and MAC keys from kex.K, kex.H and sessionId, as
// described in RFC 4253, section 6.4. direction should either be serverKeys
// (to setup server->client keys) or clientKeys (for client->server keys).
func newPacketCipher(d direction, algs DirectionAlgorithms, kex *kexResult) (packetCipher, error) {
	cipherMode := cipherModes[algs.Cipher]
	if cipherMode == nil {
		return nil, fmt.Errorf("ssh: unsupported cipher %v", algs.Cipher)
	}

	iv := make([]byte, cipherMode.ivSize)
	key := make([]byte, cipherMode.keySize)

	generateKeyMaterial(iv, d.ivTag, kex)
	generateKeyMaterial(key, d.keyTag, kex)

	var macKey []byte
	if !aeadCiphers[algs.Cipher] {
		macMode := macModes[algs.MAC]
		macKey = make([]byte, macMode.keySize)
		generateKeyMaterial(macKey, d.macKeyTag, kex)
	}

	return cipherModes[algs.Cipher].create(key, iv, macKey, algs)
}

// generateKeyMaterial fills out with key material generated from tag, K, H
// and sessionId, as specified in RFC 4253, section 7.2.
func generateKeyMaterial(out, tag []byte, r *kexResult) {
	var digestsSoFar []byte

	h := r.Hash.New()
	for len(out) > 0 {
		h.Reset()
		h.Write(r.K)
		h.Write(r.H)

		if len(digestsSoFar) == 0 {
			h.Write(tag)
			h.Write(r.SessionID)
		} else {
			h.Write(digestsSoFar)
		}

		digest := h.Sum(nil)
		n := copy(out, digest)
		out = out[n:]
		if len(out) > 0 {
			digestsSoFar = append(digestsSoFar, digest...)
		}
	}
}

const packageVersion = "SSH-2.0-Go"

// Sends and receives a version line.  The versionLine string should
// be US ASCII, start with "SSH-2.0-", and should not include a
// newline. exchangeVersions returns the other side's version line.
func exchangeVersions(rw io.ReadWriter, versionLine []byte) (them []byte, err error) {
	// Contrary to the RFC, we do not ignore lines that don't
	// start with "SSH-2.0-" to make the library usable with
	// nonconforming servers.
	for _, c := range versionLine {
		// The spec disallows non US-ASCII chars, and
		// specifically forbids null chars.
		if c < 32 {
			return nil, errors.New("ssh: junk character in version line")
		}
	}
	if _, err = rw.Write(append(versionLine, '\r', '\n')); err != nil {
		return
	}

	them, err = readVersion(rw)
	return them, err
}

// maxVersionStringBytes is the maximum number of bytes that we'll
// accept as a version string. RFC 4253 section 4.2 limits this at 255
// chars
const maxVersionStringBytes = 255

// maxPreVersionLines is the maximum number of lines sent by the peer
// before the version string. Each of these lines is limited to a maximum
// of maxVersionStringBytes chars. Lines sent before the version string
// are silently ignored.
const maxPreVersionLines = 1024

// Read version string as specified by RFC 4253, section 4.2.
func readVersion(r io.Reader) ([]byte, error) {
	versionString := make([]byte, 0, 64)
	var ok bool
	var buf [1]byte

	for lines := 0; len(versionString) < maxVersionStringBytes && lines < maxPreVersionLines; {
		_, err := io.ReadFull(r, buf[:])
		if err != nil {
			return nil, err
		}
		// The RFC says that the version should be terminated with \r\n
		// but several SSH servers actually only send a \n.
		if buf[0] == '\n' {
			if !bytes.HasPrefix(versionString, []byte("SSH-")) {
				// RFC 4253 says we need to ignore all version string lines
				// except the one containing the SSH version.
				versionString = versionString[:0]
				lines++
				continue
			}
			ok = true
			break
		}

		// non ASCII chars are disallowed, but we are lenient,
		// since Go doesn't use null-terminated strings.

		// The RFC allows a comment after a space, however,
		// all of it (version and comments) goes into the
		// session hash.
		versionString = append(versionString, buf[0])
	}

	if !ok {
		return nil, errors.New("ssh: overflow reading version string")
	}

	// There might be a '\r' on the end which we should remove.
	if len(versionString) > 0 && versionString[len(versionString)-1] == '\r' {
		versionString = versionString[:len(versionString)-1]
	}
	return versionString, nil
}
