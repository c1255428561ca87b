// Package bastion is xenbastion's SSH server: it authenticates users by
// public key, decides which VM consoles each may open, and relays consoles
// between SSH channels and XAPI console connections, writing an audit
// record for each.
//
// # How a connection flows through the code
//
// [Server] wraps a gliderlabs/ssh server. For each TCP connection:
//
//  1. conn.go: trackConn gives the connection an ID and a connState, and
//     wraps it so that a connection that ends without authenticating leaves
//     an auth.failure record, and holds the handshake deadline and the
//     unauthenticated-connection caps. auth.go: [Policy.Authenticate] judges
//     a key or certificate for a login name; authConfig's
//     VerifiedPublicKeyCallback calls it with the name of the signed
//     request (never the first request's name, which a client may change)
//     and takes the user's connection slot; AuthLogCallback records
//     auth.success and checks the key once more against the policy in
//     force (a reload may have revoked it meanwhile). Passwords and
//     keyboard-interactive are never offered.
//  2. channel.go and server.go: "session" and "direct-tcpip" are the only
//     channel types served; global requests (remote forwards) and
//     subsystems are refused, and so are agent, X11 and env requests. A
//     certificate without permit-pty gets no PTY, and one without
//     permit-port-forwarding no forward (a console.denied record).
//  3. forward.go: a direct-tcpip channel ("ssh -L/-W/-D") must target port
//     5900; its host names a VM. session.go: a session runs "list",
//     "console VM", "help", or a prompt.
//  4. open.go: find resolves the name with [ParseTarget] and the pools'
//     FindVMs, drops the VMs the user may not open ([Policy.Decide], the
//     one place access is decided) before saying anything else about them,
//     then picks one with xapi.Choose; open takes a console slot, writes
//     console.start and dials the console through the pool while the audit
//     log syncs it (dialWhileSyncing: a warm console's CONNECT goes out
//     before the sync, and its reply is read after). A forward's channel is
//     accepted once both are done, with the console bytes that came with
//     the CONNECT reply in the same write (accept).
//     A refusal is a denial: a short message for the user, a reason for the
//     audit log, and the internal error for the operator's log only.
//  5. relay.go: begin registers the session and writes console.start,
//     synced before any byte moves; run relays both ways until one side
//     ends, the connection goes, a limit or a reload (SetPolicy) ends it,
//     or the server shuts down, and always writes console.end with the byte
//     counts and the reason.
//
// Shutdown stops accepting, closes the connections still logging in (their
// auth.failure records say "server shutting down"), cancels the server's
// base context (every relay
// watches it and ends with reason "server shutdown"), waits for the
// handlers to write their records, ends each connection's stream and
// gives the clients a moment to close them, then closes what is left.
//
// The package depends on XAPI only through the [Pool] interface, which
// *xapi.Client implements; bastiontest starts a Server in front of the
// simulated pool of xapi/xapitest for tests.
package bastion
