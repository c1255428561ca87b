module github.com/xenbastion/xenbastion

go 1.26.8

require (
	github.com/gliderlabs/ssh v0.3.8
	github.com/kolo/xmlrpc v0.0.0-20220921171641-a4b6fa1dd06b
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/crypto v0.58.0
	golang.org/x/term v0.47.0
	golang.org/x/time v0.16.0
)

require (
	github.com/aead/chacha20 v0.0.0-20180709150244-8b13a72661da // indirect
	github.com/aead/poly1305 v0.0.0-20180717145839-3fee0db0b635 // indirect
	github.com/anmitsu/go-shlex v0.0.0-20200514113438-38f4b401e2be // indirect
	golang.org/x/sys v0.49.0 // indirect
)

// A copy of golang.org/x/crypto v0.58.0 (only the packages the bastion
// builds) with patches to the SSH transport; see third_party/README.md.
replace golang.org/x/crypto => ./third_party/golang.org/x/crypto
