package keys_test

import (
	"fmt"
	"log"

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
