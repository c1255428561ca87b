package rfb_test

import (
	"log"
	"net"

	"github.com/xenbastion/xenbastion/xapi/xapitest/rfb"
)

// A VNC server on 127.0.0.1:5900 that any viewer can connect to.
func ExampleServe() {
	l, err := net.Listen("tcp", "127.0.0.1:5900")
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer conn.Close()
			if err := rfb.Serve(conn, "test pattern"); err != nil {
				log.Print(err)
			}
		}()
	}
}
