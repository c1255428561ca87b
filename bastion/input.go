package bastion

import "context"

// input is a session's stdin, read straight from its SSH channel, which
// can stop waiting when a context ends without taking anything (the
// patched x/crypto channel's ReadContext, third_party/README.md): a reader
// can give up (a console ends, and the prompt reads the next line) without
// losing what was typed.
type input struct {
	ctx  context.Context // ends Read: the session's, or the server's shutdown
	ch   ctxReader
	back []byte // given back by unread: read before the channel
}

// ReadContext reads what was typed, waiting until there is some, the input
// ends, or ctx is done.
func (in *input) ReadContext(ctx context.Context, p []byte) (int, error) {
	if len(in.back) > 0 {
		n := copy(p, in.back)
		in.back = in.back[n:]
		return n, nil
	}
	return in.ch.ReadContext(ctx, p)
}

// unreader is an input that can take back bytes read but not used.
type unreader interface{ unread(p []byte) }

// unread gives p back: the next reads return it first (what was typed
// after Ctrl-] in the same packet goes to the prompt). It copies p.
func (in *input) unread(p []byte) {
	in.back = append(append([]byte(nil), p...), in.back...)
}

// Read implements io.Reader for the prompt's line editor; it gives up
// when the input's context ends.
func (in *input) Read(p []byte) (int, error) {
	return in.ReadContext(in.ctx, p)
}

// promptInput is the input as the prompt's line editor (x/term) reads it.
// It hands over at most one line a read, so that what follows a command
// in the same packet (a pasted "console web-1\rhostname\r") stays in the
// input for the console instead of in the line editor's buffer. And it
// turns Ctrl-C, which the line editor takes for the end of the input (and
// the prompt for "exit"), into Ctrl-U, which drops the line being typed.
type promptInput struct{ in *input }

func (p promptInput) Read(b []byte) (int, error) {
	n, err := p.in.Read(b)
	for i := 0; i < n; i++ {
		switch b[i] {
		case 0x03: // Ctrl-C
			b[i] = 0x15 // Ctrl-U
		case '\r', '\n':
			end := i + 1
			if b[i] == '\r' && end < n && b[end] == '\n' {
				end++
			}
			if end < n {
				p.in.unread(b[end:n])
				return end, nil
			}
			return n, err
		}
	}
	return n, err
}
