// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"bytes"
	"context"
	"io"
	"sync"
)

// buffer provides a linked list buffer for data exchange
// between producer and consumer. Theoretically the buffer is
// of unlimited capacity as it does no allocation of its own.
type buffer struct {
	// protects concurrent access to head, tail and closed
	*sync.Cond

	head *element // the buffer that will be read first
	tail *element // the buffer that will be read last

	closed bool

	// xenbastion patch: what the reading path would otherwise allocate
	// for every packet. free lists elements that have been read, for
	// writePacket to use again; watched is the context ReadContext was
	// last given, and stopWatch stops the wake-up registered for it.
	free      *element
	watched   context.Context
	stopWatch func() bool
	wake      func()
	// pooled counts the elements that hold a pooled packet (see
	// writePacket).
	pooled int
}

// A buffer keeps small data (under minPooledData) in the pooled packet it
// was read into for at most maxPooled elements; past that, it copies the
// data out and gives the packet back (xenbastion patch). A pooled packet is
// 36 KiB (40 KiB of heap): a peer that sent small packets nobody read soon
// (stderr, which a server never reads, or input while the server is busy)
// would otherwise pin 40 KiB per byte of its window, where upstream holds
// about the packet's size. Data read as it comes (keystrokes) stays in its
// packet, and allocates nothing.
const (
	maxPooled     = 4
	minPooledData = (pooledPacketSize - pooledPacketOffset) / 2
)

// isPooled says whether packet is in a pooled buffer (see recyclePacket).
func isPooled(packet []byte) bool {
	return cap(packet) == pooledPacketSize-pooledPacketOffset
}

// An element represents a single link in a linked list.
type element struct {
	buf  []byte
	next *element
	// packet, if not nil, is the pooled packet buf is part of, recycled
	// once buf is read (xenbastion patch).
	packet []byte
}

// newBuffer returns an empty buffer that is not closed.
func newBuffer() *buffer {
	e := new(element)
	b := &buffer{
		Cond: newCond(),
		head: e,
		tail: e,
	}
	return b
}

// write makes buf available for Read to receive.
// buf must not be modified after the call to write.
func (b *buffer) write(buf []byte) {
	b.writePacket(buf, nil)
}

// writePacket is write for buf, part of packet, which is recycled (see
// recyclePacket) once buf has been read.
func (b *buffer) writePacket(buf, packet []byte) {
	b.Cond.L.Lock()
	if isPooled(packet) {
		if b.pooled >= maxPooled && len(buf) < minPooledData {
			buf = bytes.Clone(buf)
			recyclePacket(packet)
			packet = nil
		} else {
			b.pooled++
		}
	}
	e := b.free
	if e != nil {
		b.free = e.next
		*e = element{buf: buf, packet: packet}
	} else {
		e = &element{buf: buf, packet: packet}
	}
	b.tail.next = e
	b.tail = e
	b.Cond.Signal()
	b.Cond.L.Unlock()
}

// eof closes the buffer. Reads from the buffer once all
// the data has been consumed will receive io.EOF.
func (b *buffer) eof() {
	b.Cond.L.Lock()
	b.closed = true
	b.Cond.Signal()
	b.Cond.L.Unlock()
}

// advance makes the next element the head, keeping the old one for
// writePacket (xenbastion patch). b.head must not be b.tail.
func (b *buffer) advance() {
	old := b.head
	b.head = old.next
	*old = element{next: b.free}
	b.free = old
}

// next removes the next piece of data from the buffer and returns it with
// the pooled packet it is part of, if any, which the caller recycles once
// it has used the data (xenbastion patch). It blocks until there is data
// or the buffer is closed, then returns io.EOF.
func (b *buffer) next() (buf, packet []byte, err error) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	for {
		if len(b.head.buf) > 0 {
			buf, packet = b.head.buf, b.head.packet
			b.head.buf, b.head.packet = nil, nil
			if isPooled(packet) {
				b.pooled--
			}
			return buf, packet, nil
		}
		if b.head != b.tail {
			b.advance()
			continue
		}
		if b.closed {
			return nil, nil, io.EOF
		}
		b.Cond.Wait()
	}
}

// watch makes sure a Wait wakes up when ctx ends. The wake-up stays
// registered for the next call with the same context, so that a reader
// that passes the same one every time allocates nothing per read. b.Cond.L
// must be held.
func (b *buffer) watch(ctx context.Context) {
	// A context that cannot end, or has ended, needs no wake-up: ctx.Err
	// is checked before every wait.
	if ctx == b.watched || ctx.Done() == nil || ctx.Err() != nil {
		return
	}
	if b.stopWatch != nil {
		b.stopWatch()
	}
	if b.wake == nil {
		b.wake = func() {
			b.Cond.L.Lock()
			b.Cond.Broadcast()
			b.Cond.L.Unlock()
		}
	}
	b.watched, b.stopWatch = ctx, context.AfterFunc(ctx, b.wake)
}

// Read reads data from the internal buffer in buf.  Reads will block
// if no data is available, or until the buffer is closed.
func (b *buffer) Read(buf []byte) (n int, err error) {
	return b.ReadContext(context.Background(), buf)
}

// ReadContext is Read, but it stops waiting when ctx is done and returns
// ctx's error, having taken nothing from the buffer (xenbastion patch).
// Readers take turns: one that calls with another context while a reader
// waits replaces that reader's wake-up, and the waiting one then returns
// only with data or at EOF.
// ctx must be comparable with ==, as the contexts of package context are.
func (b *buffer) ReadContext(ctx context.Context, buf []byte) (n int, err error) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	b.watch(ctx)

	for len(buf) > 0 {
		// if there is data in b.head, copy it
		if len(b.head.buf) > 0 {
			r := copy(buf, b.head.buf)
			buf, b.head.buf = buf[r:], b.head.buf[r:]
			n += r
			if len(b.head.buf) == 0 && b.head.packet != nil {
				if isPooled(b.head.packet) {
					b.pooled--
				}
				recyclePacket(b.head.packet)
				b.head.packet = nil
			}
			continue
		}
		// if there is a next buffer, make it the head
		if len(b.head.buf) == 0 && b.head != b.tail {
			b.advance()
			continue
		}

		// if at least one byte has been copied, return
		if n > 0 {
			break
		}

		// if nothing was read, and there is nothing outstanding
		// check to see if the buffer is closed.
		if b.closed {
			err = io.EOF
			break
		}
		if err = ctx.Err(); err != nil {
			break
		}
		// out of buffers, wait for producer
		b.Cond.Wait()
	}
	return
}
