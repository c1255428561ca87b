package keys_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/xenbastion/xenbastion/keys"
)

func ExampleParseAuthorizedKeys() {
	data := []byte(`# operators
from="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81 alice@example.com
`)
	authorized, err := keys.ParseAuthorizedKeys(data, "inline")
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range authorized {
		fmt.Println(k.Source, k.Line, keys.Fingerprint(k.Key), k.Comment, k.Options)
	}
	set := keys.NewKeySet(authorized)
	fmt.Println(set.Contains(authorized[0].Key))

	_, err = keys.ParseAuthorizedKeys([]byte("ssh-ed25519 AAAA= bob\n"), "inline")
	fmt.Println(err)
	// Output:
	// inline 2 SHA256:V8QfWxiYf78vTrFV5K56fC2h2j5lujFAaDtA3bcpZ7I alice@example.com [from="10.0.0.0/8"]
	// true
	// keys: inline:1: not a valid authorized key: ssh-ed25519 key: illegal base64 data at input byte 4
}

func ExampleKeySet_Permit() {
	data := []byte(`# alice: from the office, or from home until the end of 2030 (UTC)
from="10.0.0.0/8,!10.66.0.0/16" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81 alice@example.com
from="198.51.100.7",expiry-time="20301231235959Z" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81 alice@home
`)
	authorized, err := keys.ParseAuthorizedKeys(data, "alice.keys")
	if err != nil {
		log.Fatal(err)
	}
	set := keys.NewKeySet(authorized)
	alice := authorized[0].Key
	login := func(ip string, now time.Time) {
		ak, err := set.Permit(alice, &net.TCPAddr{IP: net.ParseIP(ip), Port: 50022}, now)
		if errors.Is(err, keys.ErrFromRefused) || errors.Is(err, keys.ErrExpired) {
			fmt.Printf("%s refused:\n%v\n", ip, err)
			return
		}
		fmt.Println(ip, "permitted by line", ak.Line)
	}
	in2030 := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	login("10.1.2.3", in2030)
	login("198.51.100.7", in2030)
	login("10.66.0.1", in2030)
	login("198.51.100.7", in2030.AddDate(1, 0, 0))

	_, err = keys.ParseAuthorizedKeys([]byte(`no-pty `+"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81"), "bob.keys")
	fmt.Println(err)
	// Output:
	// 10.1.2.3 permitted by line 2
	// 198.51.100.7 permitted by line 3
	// 10.66.0.1 refused:
	// keys: alice.keys:2: key not allowed from this address: 10.66.0.1 does not match from="10.0.0.0/8,!10.66.0.0/16"
	// keys: alice.keys:3: key not allowed from this address: 10.66.0.1 does not match from="198.51.100.7"
	// 198.51.100.7 refused:
	// keys: alice.keys:2: key not allowed from this address: 198.51.100.7 does not match from="10.0.0.0/8,!10.66.0.0/16"
	// keys: alice.keys:3: key expired at 2030-12-31T23:59:59Z
	// keys: bob.keys:1: not a valid authorized key: unsupported option "no-pty": only from= and expiry-time= are supported
}

func ExampleParseAddrPatterns() {
	p, err := keys.ParseAddrPatterns("10.0.0.0/8,!10.66.0.0/16,2001:db8::/32,192.168.1.*")
	if err != nil {
		log.Fatal(err)
	}
	for _, ip := range []string{"10.1.2.3", "::ffff:10.1.2.3", "10.66.0.1", "2001:db8::1", "192.168.1.20", "192.168.2.1"} {
		fmt.Println(ip, p.Match(netip.MustParseAddr(ip)))
	}
	_, err = keys.ParseAddrPatterns("10.0.0.1/8")
	fmt.Println(err)
	// Output:
	// 10.1.2.3 true
	// ::ffff:10.1.2.3 true
	// 10.66.0.1 false
	// 2001:db8::1 true
	// 192.168.1.20 true
	// 192.168.2.1 false
	// keys: address pattern "10.0.0.1/8": bits are set after the /8 prefix: did you mean 10.0.0.0/8?
}
