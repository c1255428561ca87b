package xapi

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// A reply as xapi writes it: bare strings, ints as strings, booleans typed.
const vmRecordReply = `<?xml version="1.0"?><methodResponse><params><param><value><struct>
<member><name>Status</name><value>Success</value></member>
<member><name>Value</name><value><struct>
<member><name>uuid</name><value>5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11</value></member>
<member><name>name_label</name><value>web &amp; mail</value></member>
<member><name>name_description</name><value></value></member>
<member><name>power_state</name><value>Running</value></member>
<member><name>is_a_template</name><value><boolean>0</boolean></value></member>
<member><name>is_a_snapshot</name><value><boolean>0</boolean></value></member>
<member><name>is_control_domain</name><value><boolean>0</boolean></value></member>
<member><name>domid</name><value>12</value></member>
<member><name>memory_target</name><value>1073741824</value></member>
<member><name>consoles</name><value><array><data><value>OpaqueRef:c1</value><value>OpaqueRef:c2</value></data></array></value></member>
<member><name>resident_on</name><value>OpaqueRef:h1</value></member>
<member><name>tags</name><value><array><data></data></array></value></member>
<member><name>other_config</name><value><struct><member><name>disable_pv_vnc</name><value>1</value></member></struct></value></member>
<member><name>blocked_operations</name><value><struct></struct></value></member>
</struct></value></member>
</struct></value></param></params></methodResponse>`

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	var r vmRecord
	if err := decodeReply([]byte(vmRecordReply), &r); err != nil {
		t.Fatal(err)
	}
	if r.NameLabel != "web & mail" || r.PowerState != "Running" || r.ResidentOn != "OpaqueRef:h1" ||
		len(r.Consoles) != 2 || r.Consoles[1] != "OpaqueRef:c2" || r.OtherConfig["disable_pv_vnc"] != "1" || r.IsATemplate {
		t.Errorf("decoded %+v", r)
	}

	var void struct{}
	if err := decodeReply([]byte(`<methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value></value></member></struct></value></param></params></methodResponse>`), &void); err != nil {
		t.Errorf("void reply: %v", err)
	}

	var s string
	err := decodeReply([]byte(`<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>HOST_IS_SLAVE</value><value>192.0.2.1</value></data></array></value></member></struct></value></param></params></methodResponse>`), &s)
	var xe *Error
	if !errors.As(err, &xe) || xe.Code != CodeHostIsSlave || xe.Params[0] != "192.0.2.1" {
		t.Errorf("failure reply: %v", err)
	}
	if !errors.Is(err, &Error{Code: CodeHostIsSlave}) || errors.Is(err, &Error{Code: CodeSessionInvalid}) {
		t.Errorf("errors.Is by code does not work for %v", err)
	}

	if err := decodeReply([]byte(`<html>500 Internal Error</html>`), &s); err == nil {
		t.Error("an HTML page decoded without error")
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(vmRecordReply))
	f.Add([]byte(`<methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>SESSION_INVALID</value></data></array></value></member></struct></value></param></params></methodResponse>`))
	f.Add([]byte(`<value><array><data><value>x</value></data></array></value>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r vmRecord
		_ = decodeReply(data, &r)
		var m map[string]consoleRecord
		_ = decodeReply(data, &m)
		var refs []string
		_ = decodeReply(data, &refs)
	})
}

func TestReadConnectReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reply  string
		status int    // 0: success
		rest   string // what the reader must still hold
		bad    bool   // not an HTTP reply
	}{
		{name: "xapi 200 with banner in the same record",
			reply: "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\nRFB 003.008\n",
			rest:  "RFB 003.008\n"},
		{name: "200 without body", reply: "HTTP/1.1 200 OK\r\n\r\n"},
		{name: "bare LF", reply: "HTTP/1.0 200 OK\n\nxyz", rest: "xyz"},
		{name: "401", reply: "HTTP/1.0 401 Unauthorised\r\nWWW-Authenticate: Basic realm=\"connect_console\"\r\n\r\n", status: 401},
		{name: "500 with body", reply: "HTTP/1.1 500 Internal Error\r\ncontent-length: 10\r\nconnection: close\r\n\r\n<html>...", status: 500, rest: "<html>..."},
		{name: "503", reply: "HTTP/1.1 503 Connection Limit Exceeded\r\n\r\n", status: 503},
		{name: "not http", reply: "RFB 003.008\n", bad: true},
		{name: "truncated", reply: "HTTP/1.1 200 OK\r\nConnection: keep", bad: true},
		{name: "bad status", reply: "HTTP/1.1 2000 OK\r\n\r\n", bad: true},
		{name: "status 000", reply: "HTTP/1. 000 \n\n", bad: true},
		{name: "HTTP/2", reply: "HTTP/2 200 OK\r\n\r\n", bad: true},
		{name: "empty", reply: "", bad: true},
		{name: "header too long", reply: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReaderSize(strings.NewReader(tt.reply), 4096)
			err := ReadConnectReply(br)
			var ce *ConnectError
			switch {
			case tt.bad:
				if err == nil || errors.As(err, &ce) {
					t.Fatalf("err = %v, want a protocol error", err)
				}
				return
			case tt.status != 0:
				if !errors.As(err, &ce) || ce.StatusCode != tt.status {
					t.Fatalf("err = %v, want status %d", err, tt.status)
				}
			case err != nil:
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
		})
	}
}

func FuzzReadConnectReply(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\nRFB 003.008\n"))
	f.Add([]byte("HTTP/1.0 401 Unauthorised\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 4096)
		err := ReadConnectReply(br)
		if err == nil && !strings.HasPrefix(string(data), "HTTP/1.0 200") && !strings.HasPrefix(string(data), "HTTP/1.1 200") {
			t.Fatalf("accepted %q", data)
		}
		var ce *ConnectError
		if errors.As(err, &ce) && (ce.StatusCode < 100 || ce.StatusCode > 999 || ce.StatusCode == 200) {
			t.Fatalf("status %d from %q", ce.StatusCode, data)
		}
	})
}

func TestHostURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.10":      "https://192.0.2.10",
		"2001:db8::10":    "https://[2001:db8::10]",
		"fe80::1%eth0":    "https://[fe80::1%25eth0]",
		"127.0.0.1:8443":  "https://127.0.0.1:8443",
		"[::1]:8443":      "https://[::1]:8443",
		"xs1.example.com": "https://xs1.example.com",
		" 192.0.2.10\n":   "https://192.0.2.10",
	} {
		if got := hostURL(in); got != want {
			t.Errorf("hostURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := hostPort("2001:db8::10", "443"); got != "[2001:db8::10]:443" {
		t.Errorf("hostPort v6 = %q", got)
	}
	if got := hostPort("[2001:db8::10]:8443", "443"); got != "[2001:db8::10]:8443" {
		t.Errorf("hostPort v6 with port = %q", got)
	}
}

func TestChoose(t *testing.T) {
	t.Parallel()
	run := func(uuid string) VM { return VM{UUID: uuid, PowerState: Running} }
	halt := func(uuid string) VM { return VM{UUID: uuid, PowerState: Halted} }
	tests := []struct {
		name    string
		vms     []VM
		want    string
		wantErr error
		uuids   []string
	}{
		{name: "none", wantErr: ErrNotFound},
		{name: "one halted", vms: []VM{halt("a")}, want: "a"},
		{name: "one running among halted", vms: []VM{halt("a"), run("b"), halt("c")}, want: "b"},
		{name: "two running", vms: []VM{run("b"), halt("c"), run("a")}, uuids: []string{"a", "b"}},
		{name: "two halted", vms: []VM{halt("b"), halt("a")}, uuids: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vm, err := Choose("web", tt.vms)
			var amb *AmbiguousError
			switch {
			case tt.uuids != nil:
				if !errors.As(err, &amb) || strings.Join(amb.UUIDs, ",") != strings.Join(tt.uuids, ",") {
					t.Fatalf("err = %v, want ambiguous %v", err, tt.uuids)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case err != nil || vm.UUID != tt.want:
				t.Fatalf("got %q, %v; want %q", vm.UUID, err, tt.want)
			}
		})
	}
}

func TestTrust(t *testing.T) {
	t.Parallel()
	if _, err := (Trust{}).TLSConfig(); !errors.Is(err, ErrNoTrust) || !strings.Contains(err.Error(), "openssl x509") {
		t.Errorf("empty trust: %v", err)
	}
	if _, err := (Trust{Fingerprints: []string{"AB:CD"}}).TLSConfig(); err == nil {
		t.Error("short fingerprint accepted")
	}
	if _, err := (Trust{Fingerprints: []string{strings.Repeat("ab:", 31) + "ab"}, InsecureSkipVerify: true}).TLSConfig(); err == nil {
		t.Error("two trust choices accepted")
	}
	for _, in := range []string{
		strings.Repeat("AB:", 31) + "AB",
		strings.Repeat("ab", 32),
		"sha256 Fingerprint=" + strings.Repeat("AB:", 31) + "AB",
	} {
		got, err := normalizeFingerprint(in)
		if err != nil || got != strings.Repeat("AB:", 31)+"AB" {
			t.Errorf("normalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
}
