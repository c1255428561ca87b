package bastion

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Audit event names.
const (
	EventAuthSuccess = "auth.success"
	EventAuthFailure = "auth.failure"
	EventAuthBlocked = "auth.blocked"
	// EventTLSMismatch: a XAPI host showed a certificate other than the
	// one pinned or first seen.
	EventTLSMismatch   = "xapi.tls_mismatch"
	EventConsoleStart  = "console.start"
	EventConsoleEnd    = "console.end"
	EventConsoleDenied = "console.denied"
)

// timeFormat is RFC 3339 in UTC with microseconds, always written.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// Event is one audit record. Fields that do not apply to an event are
// omitted; the counters of console.end are always written.
type Event struct {
	Time           string `json:"time"` // RFC 3339, UTC, fractional seconds
	Event          string `json:"event"`
	ConnID         string `json:"conn_id"`
	User           string `json:"user"`
	KeyFingerprint string `json:"key_fingerprint"`
	RemoteAddr     string `json:"remote_addr"`

	SessionID string `json:"session_id,omitempty"`
	Pool      string `json:"pool,omitempty"`
	VM        string `json:"vm,omitempty"`
	VMUUID    string `json:"vm_uuid,omitempty"`
	Protocol  string `json:"protocol,omitempty"` // rfb or vt100
	Via       string `json:"via,omitempty"`      // forward or command
	Target    string `json:"target,omitempty"`   // console.denied: what was asked for

	XAPIHost    string `json:"xapi_host,omitempty"`   // xapi.tls_mismatch: HOST:PORT
	Fingerprint string `json:"fingerprint,omitempty"` // xapi.tls_mismatch: the certificate seen

	BytesIn    *int64 `json:"bytes_in,omitempty"`  // console.end: client to VM
	BytesOut   *int64 `json:"bytes_out,omitempty"` // console.end: VM to client
	DurationMS *int64 `json:"duration_ms,omitempty"`

	Reason string `json:"reason,omitempty"`
}

// AuditLog writes audit events as JSON lines. Each event is written whole
// with a single write to a file opened for appending, so concurrent
// bastions and log shippers never see a torn line. The zero value discards
// events.
type AuditLog struct {
	mu   sync.Mutex // serialises writes, so lines never interleave, and guards w and file
	w    io.Writer
	file *os.File // non-nil when w is a file that can be synced
	path string   // file's path, for Reopen
	// retired is the file the last Reopen closed, and how syncing it
	// went: a sync that raced the Reopen takes that as its own.
	retired    *os.File
	retiredErr error
	now        func() time.Time
}

// auditFlags open the audit log for appending, creating it.
const auditFlags = os.O_WRONLY | os.O_APPEND | os.O_CREATE

// OpenAuditLog opens path for appending (creating it with mode 0600), or
// standard output for "-".
func OpenAuditLog(path string) (*AuditLog, error) {
	if path == "-" {
		return &AuditLog{w: os.Stdout}, nil
	}
	f, err := os.OpenFile(path, auditFlags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &AuditLog{w: f, file: f, path: path}, nil
}

// NewAuditLog returns an audit log that writes to w.
func NewAuditLog(w io.Writer) *AuditLog { return &AuditLog{w: w} }

// Write stamps ev with the time and appends it. With sync, the file is
// synced to disk before Write returns.
func (a *AuditLog) Write(ev Event, sync bool) error {
	if a == nil {
		return nil
	}
	now := time.Now
	if a.now != nil {
		now = a.now
	}
	ev.Time = now().UTC().Format(timeFormat)
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	line = append(line, '\n')
	a.mu.Lock()
	if a.w != nil {
		_, err = a.w.Write(line)
	}
	f := a.file
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if sync {
		return a.sync(f)
	}
	return nil
}

// Sync flushes the records written so far to disk.
func (a *AuditLog) Sync() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	f := a.file
	a.mu.Unlock()
	return a.sync(f)
}

// sync syncs f, the log's file when the caller last looked. Writes go on
// meanwhile: an fsync costs as much as a console dial.
func (a *AuditLog) sync(f *os.File) error {
	if f == nil {
		return nil
	}
	err := f.Sync()
	if errors.Is(err, os.ErrClosed) {
		// Reopen synced f, then closed it: its result is this one's. A
		// file retired by an earlier Reopen (two rotations during one
		// sync) has no result left: say it failed, to be safe.
		a.mu.Lock()
		if a.retired == f {
			err = a.retiredErr
		}
		a.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("audit log: sync: %w", err)
	}
	return nil
}

// Reopen opens the log's path again, for log rotation: once the file has
// been renamed (logrotate's default), records go to a new file at the
// path. What was written to the old file is synced before it is closed.
// If the path cannot be opened, records go on to the old file and the
// error says "reopen"; if the old file could not be synced or closed, the
// error says "reopened". A log on standard output, or on a writer, is left
// as it is.
func (a *AuditLog) Reopen() error {
	if a == nil || a.path == "" {
		return nil
	}
	f, err := os.OpenFile(a.path, auditFlags, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: reopen: %w", err)
	}
	a.mu.Lock()
	old := a.file
	a.w, a.file = f, f
	a.mu.Unlock()
	serr := old.Sync()
	a.mu.Lock()
	a.retired, a.retiredErr = old, serr
	a.mu.Unlock()
	if err := errors.Join(serr, old.Close()); err != nil {
		return fmt.Errorf("audit log: reopened, but the old file: %w", err)
	}
	return nil
}

// Close closes the log's file, if it has one.
func (a *AuditLog) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	return a.file.Close()
}
