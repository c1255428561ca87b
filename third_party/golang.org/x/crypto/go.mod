module golang.org/x/crypto

go 1.26.0

require (
	github.com/aead/chacha20 v0.0.0-20180709150244-8b13a72661da // xenbastion patch
	github.com/aead/poly1305 v0.0.0-20180717145839-3fee0db0b635 // xenbastion patch
	golang.org/x/net v0.60.0 // tagx:ignore
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require golang.org/x/text v0.43.0 // indirect
