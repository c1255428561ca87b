// Package xapi is a client for one XenServer / XCP-ng pool, speaking XAPI's
// XML-RPC dialect over HTTPS and opening VM consoles through XAPI's CONNECT
// endpoint.
//
// A [Client] logs in once with the configured credentials and reuses the
// session for every call. It logs in again when XAPI says SESSION_INVALID,
// follows HOST_IS_SLAVE to the pool master, looks for the master again from
// the configured host, then from the other hosts it has met, when no
// connection can be made to it (a failover), makes no new login for 30 s
// (doubling to 5 minutes) after SESSION_AUTHENTICATION_FAILED, and gives
// every call a deadline
// (kolo/xmlrpc takes no context, so the client drives the HTTP request
// itself and uses kolo/xmlrpc only to encode calls and decode replies).
//
// Failures that XAPI reports are returned as *[Error] with XAPI's code and
// parameters; conditions callers branch on ([ErrNotFound], [ErrNotRunning],
// [ErrNoConsole], *[AmbiguousError], *[ConnectError]) are checked with
// errors.Is and errors.As.
//
// [Client.DialConsole] opens a console: TLS to the host named by the
// console's location, "CONNECT /console?..." with the session, a 200 reply
// required, and a net.Conn that carries the raw console bytes (RFB or vt100)
// from the first byte after the reply header. The client keeps a spare TLS
// connection to each console host it has dialled, so that the next CONNECT
// needs no handshake; [Client.ConnectNow] sends a CONNECT over it at once
// and reads the reply later, for a caller with something else to do
// meanwhile.
//
// TLS trust is explicit: see [Trust]. XAPI hosts serve self-signed
// certificates, so a pool is trusted by pinned SHA-256 fingerprints, by a CA
// file, on first use (each host's fingerprint recorded in a [KnownHosts]
// file the first time it is reached, and required from then on), or (with
// a logged warning) not verified at all. Every TLS connection, XML-RPC and
// console alike, is checked for the host it was dialled to; a certificate
// that does not match is a *[FingerprintError]. [Client.HostFingerprints]
// reads every host's fingerprint so that an administrator can pin them.
package xapi
