package bastion

import (
	"bytes"
	"context"
	"io"
	"sync"
)

// input reads a session's stdin so that a reader can stop waiting for it (a
// console ends, and the prompt reads the next line) without losing what was
// typed: straight from the SSH channel when it can stop waiting itself (the
// patched x/crypto channel, third_party/README.md), else through a goroutine
// that reads it.
type input struct {
	ctx context.Context // ends Read: the session's, or the server's shutdown
	// direct, if not nil, is read directly, and the rest is unused.
	direct ctxReader

	chunks chan []byte
	done   chan struct{} // closed when the pump ends
	stop   chan struct{} // closed by Close: nobody reads any more
	once   sync.Once

	mu      sync.Mutex // guards pending and err
	pending []byte     // read from chunks, not yet returned
	err     error      // why the pump ended
}

func newInput(ctx context.Context, r io.Reader) *input {
	if cr, ok := r.(ctxReader); ok {
		return &input{ctx: ctx, direct: cr}
	}
	in := &input{ctx: ctx, chunks: make(chan []byte), done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(in.done)
		buf := make([]byte, 2048)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case in.chunks <- bytes.Clone(buf[:n]): // keystrokes: a few bytes
				case <-in.stop:
					return
				}
			}
			if err != nil {
				in.mu.Lock()
				in.err = err
				in.mu.Unlock()
				return
			}
		}
	}()
	return in
}

// ReadContext reads what was typed, waiting until there is some, the input
// ends, or ctx is done.
func (in *input) ReadContext(ctx context.Context, p []byte) (int, error) {
	if in.direct != nil {
		return in.direct.ReadContext(ctx, p)
	}
	in.mu.Lock()
	if len(in.pending) > 0 {
		n := copy(p, in.pending)
		in.pending = in.pending[n:]
		in.mu.Unlock()
		return n, nil
	}
	in.mu.Unlock()
	select {
	case b := <-in.chunks:
		n := copy(p, b)
		if n < len(b) {
			in.mu.Lock()
			in.pending = b[n:]
			in.mu.Unlock()
		}
		return n, nil
	case <-in.done:
		in.mu.Lock()
		defer in.mu.Unlock()
		return 0, in.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Read implements io.Reader for the prompt's line editor; it gives up
// when the input's context ends.
func (in *input) Read(p []byte) (int, error) {
	return in.ReadContext(in.ctx, p)
}

// Close lets the pump end once the session's channel closes, even if it
// holds a chunk nobody will read.
func (in *input) Close() {
	if in.direct != nil {
		return
	}
	in.once.Do(func() { close(in.stop) })
}
