package bastion

import "context"

// input is a session's stdin, read straight from its SSH channel, which
// can stop waiting when a context ends without taking anything (the
// patched x/crypto channel's ReadContext, third_party/README.md): a reader
// can give up (a console ends, and the prompt reads the next line) without
// losing what was typed.
type input struct {
	ctx context.Context // ends Read: the session's, or the server's shutdown
	ch  ctxReader
}

// ReadContext reads what was typed, waiting until there is some, the input
// ends, or ctx is done.
func (in *input) ReadContext(ctx context.Context, p []byte) (int, error) {
	return in.ch.ReadContext(ctx, p)
}

// Read implements io.Reader for the prompt's line editor; it gives up
// when the input's context ends.
func (in *input) Read(p []byte) (int, error) {
	return in.ch.ReadContext(in.ctx, p)
}
