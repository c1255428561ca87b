package xapitest_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"github.com/kolo/xmlrpc"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// A pool with the demo VMs, and an XML-RPC call to its master decoded as the
// xapi client decodes it.
func Example() {
	p, err := xapitest.DemoPool(xapitest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.CertPool()}}}
	defer client.CloseIdleConnections()
	body, _ := xmlrpc.EncodeMethodCall("session.login_with_password", p.Username(), p.Password(), "1.1", "example")
	resp, err := client.Post(p.URL(), "text/xml", bytes.NewReader(body))
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	var reply struct {
		Status string `xmlrpc:"Status"`
		Value  string `xmlrpc:"Value"`
	}
	if err := xmlrpc.Response(data).Unmarshal(&reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.Status, len(reply.Value) > len("OpaqueRef:"))
	vm, _ := p.VM("web-1")
	fmt.Println(vm.Name, vm.PowerState, len(vm.Consoles))
	// Output:
	// Success true
	// web-1 Running 2
}
