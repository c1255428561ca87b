// Package xapitest is an in-process simulated XAPI pool, like
// net/http/httptest is an in-process HTTP server: tests of the xapi client
// and of the bastion run against it, and "xenbastion demo" serves it.
//
// A [Pool] has a master and member hosts. Each [Host] is an HTTPS server on
// 127.0.0.1:0 (or [::1]:0) with its own self-signed RSA-2048 certificate and
// xapi's TLS policy: TLS 1.2 only, ECDHE-RSA-AES256-GCM-SHA384 and
// ECDHE-RSA-AES128-GCM-SHA256, curve P-384 only. All hosts share one
// database of VMs, consoles and sessions.
//
//	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: time.Millisecond})
//	p.AddDemoVMs()
//	// point a client at p.URL() as p.Username()/p.Password(), trusting
//	// p.Fingerprints() or p.CertPool()
//
// What it speaks is what xapi speaks on the wire (see
// ../shared/docs/xapi-consoles.md beside the repository, as DEVELOPERS.md
// says):
//
//   - XML-RPC on POST to any path: every reply a struct {Status, Value} or
//     {Status, ErrorDescription}, strings, refs, enums and 64-bit ints as
//     bare <value>s, and the errors SESSION_AUTHENTICATION_FAILED (after a
//     delay), HOST_IS_SLAVE (from every member), SESSION_INVALID,
//     HANDLE_INVALID, UUID_INVALID, MESSAGE_METHOD_UNKNOWN and
//     MESSAGE_PARAMETER_COUNT_MISMATCH. A malformed call gets an HTTP 500
//     page. Methods: session.login_with_password and session.logout, and
//     for the classes VM, console, host and pool get_all, get_all_records,
//     get_record, get_by_uuid and a getter per field (host.get_address,
//     pool.get_master, VM.get_consoles, ...), plus VM.get_by_name_label
//     and host.get_by_name_label.
//   - CONNECT /console?uuid=...|ref=... with a session (query or cookie) or
//     Basic credentials, on the host where the VM runs, answered byte for
//     byte as xapi answers: [ConnectOK] then the console's bytes, or 401,
//     403, 404, 500 or 503 pages.
//
// Behind an rfb console is the test-pattern VNC server of package
// xapitest/rfb; behind a vt100 console a small echoing shell shared by all
// of the console's clients. Every host has a control domain with one of
// each.
//
// Where the simulator must differ from a real pool, it says so: hosts
// report their address as "127.0.0.1:PORT" (port included, since every
// host shares the IP) where xapi reports a bare IP address and port 443 is
// implied.
//
// Fault switches change the pool under a running client:
// [Pool.ExpireSessions], [Pool.MoveMaster], [Pool.PowerOff],
// [Pool.PowerOn], [Pool.SetConsoleLimit], [Pool.SetEmptyLocationHost] and
// [Pool.SetHoldConnects].
// Counters ([Pool.Logins], [Pool.Calls], [Pool.CallCount],
// [Pool.ActiveConsoles], [Pool.Sessions]) let tests check what a client
// did.
package xapitest
