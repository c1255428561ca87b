package xapi

import (
	"errors"
	"fmt"
	"strings"
)

// XAPI error codes that this package and its callers branch on.
const (
	CodeSessionInvalid              = "SESSION_INVALID"
	CodeSessionAuthenticationFailed = "SESSION_AUTHENTICATION_FAILED"
	CodeHostIsSlave                 = "HOST_IS_SLAVE"
	CodeHandleInvalid               = "HANDLE_INVALID"
	CodeUUIDInvalid                 = "UUID_INVALID"
	CodeRBACPermissionDenied        = "RBAC_PERMISSION_DENIED"
)

// Error is a failure reported by XAPI: the ErrorDescription of a reply whose
// Status is "Failure". Code is its first element, Params the rest.
type Error struct {
	Code   string
	Params []string
}

// Error gives the code and the parameters, except SESSION_INVALID's: its
// one parameter is the session reference, a credential that logs must not
// show (expired or not).
func (e *Error) Error() string {
	if len(e.Params) == 0 || e.Code == CodeSessionInvalid {
		return "xapi: " + e.Code
	}
	return "xapi: " + e.Code + ": " + strings.Join(e.Params, ", ")
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &xapi.Error{Code: xapi.CodeSessionInvalid}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// IsCode reports whether err is, or wraps, an XAPI *Error with this code.
func IsCode(err error, code string) bool {
	var xe *Error
	return errors.As(err, &xe) && xe.Code == code
}

var (
	// ErrNotFound: no VM matches the name or UUID.
	ErrNotFound = errors.New("no such VM")
	// ErrNotRunning: the VM exists but is not running, so its consoles
	// have no address.
	ErrNotRunning = errors.New("VM is not running")
	// ErrNoConsole: the VM has no console of the wanted protocol.
	ErrNoConsole = errors.New("VM has no console of that kind")
)

// AmbiguousError is returned when a name matches several VMs that could be
// meant (several running VMs, or several halted ones and no running one).
type AmbiguousError struct {
	Name  string
	UUIDs []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q matches %d VMs, name one by UUID: %s", e.Name, len(e.UUIDs), strings.Join(e.UUIDs, ", "))
}

// ConnectError is a non-200 reply of XAPI's console CONNECT endpoint.
type ConnectError struct {
	StatusCode int    // e.g. 401, 403, 404, 500, 503
	Status     string // the whole status text, e.g. "401 Unauthorised"
}

func (e *ConnectError) Error() string {
	return "xapi: console CONNECT refused: " + e.Status
}
