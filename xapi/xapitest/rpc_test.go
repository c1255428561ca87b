package xapitest

import (
	"bytes"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/kolo/xmlrpc"
)

func TestParseMethodCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		method string
		params []any
	}{
		{name: "bare and typed strings",
			body:   `<?xml version="1.0"?><methodCall><methodName>session.login_with_password</methodName><params><param><value>root</value></param><param><value><string>pw &amp; more</string></value></param></params></methodCall>`,
			method: "session.login_with_password", params: []any{"root", "pw & more"}},
		{name: "empty values",
			body:   `<methodCall><methodName>m</methodName><params><param><value></value></param><param><value/></param><param><value><string/></value></param></params></methodCall>`,
			method: "m", params: []any{"", "", ""}},
		{name: "ints, booleans, nil",
			body:   `<methodCall><methodName>m</methodName><params><param><value><int>-3</int></value></param><param><value><i4>4</i4></value></param><param><value><i8>5</i8></value></param><param><value><boolean>1</boolean></value></param><param><value><boolean>0</boolean></value></param><param><value><nil/></value></param><param><value><double>1.5</double></value></param></params></methodCall>`,
			method: "m", params: []any{int64(-3), int64(4), int64(5), true, false, nil, 1.5}},
		{name: "array and struct, with whitespace",
			body: "<methodCall>\n <methodName> m </methodName>\n <params>\n  <param>\n   <value><array><data>\n<value>a</value><value><int>1</int></value></data></array></value>\n  </param>\n" +
				"<param><value><struct><member><name>k</name><value>v</value></member><member><name>n</name><value><array><data/></array></value></member></struct></value></param></params></methodCall>",
			method: "m", params: []any{[]any{"a", int64(1)}, map[string]any{"k": "v", "n": []any{}}}},
		{name: "no params", body: `<methodCall><methodName>m</methodName></methodCall>`, method: "m"},
		{name: "whitespace kept in bare strings", body: `<methodCall><methodName>m</methodName><params><param><value> a </value></param></params></methodCall>`,
			method: "m", params: []any{" a "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method, params, err := parseMethodCall([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if method != tt.method || (len(params) != 0 || len(tt.params) != 0) && !reflect.DeepEqual(params, tt.params) {
				t.Errorf("got %q %#v, want %q %#v", method, params, tt.method, tt.params)
			}
		})
	}
}

func TestParseMethodCallKolo(t *testing.T) {
	t.Parallel()
	body, err := xmlrpc.EncodeMethodCall("VM.get_record", "OpaqueRef:s", 42, true, []string{"a"}, map[string]string{"k": "<v>"})
	if err != nil {
		t.Fatal(err)
	}
	method, params, err := parseMethodCall(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"OpaqueRef:s", int64(42), true, []any{"a"}, map[string]any{"k": "<v>"}}
	if method != "VM.get_record" || !reflect.DeepEqual(params, want) {
		t.Errorf("got %q %#v, want %#v", method, params, want)
	}
}

func TestParseMethodCallMalformed(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		``,
		`garbage`,
		`<methodResponse/>`,
		`<methodCall><params/></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><int>x</int></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><foo/></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value>a<string>b</string></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><struct><member><value>x</value></member></struct></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value>x</value>`,
	} {
		if _, _, err := parseMethodCall([]byte(body)); !errors.Is(err, errMalformed) {
			t.Errorf("%q: err %v, want errMalformed", body, err)
		}
	}
}

func FuzzParseMethodCall(f *testing.F) {
	f.Add([]byte(`<methodCall><methodName>m</methodName><params><param><value><struct><member><name>k</name><value><array><data><value>1</value></data></array></value></member></struct></value></param></params></methodCall>`))
	f.Add([]byte(`<methodCall><methodName>m</methodName><params><param><value><i4>1</i4></value></param></params></methodCall>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, err := parseMethodCall(body)
		if err != nil && !errors.Is(err, errMalformed) {
			t.Errorf("error %v does not wrap errMalformed", err)
		}
	})
}

func TestWriteValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"string", "OpaqueRef:1", `<value>OpaqueRef:1</value>`},
		{"empty string", "", `<value></value>`},
		{"void", nil, `<value></value>`},
		{"escaped", "a<b>&\"c'\x01\t", "<value>a&lt;b&gt;&amp;&quot;c'\t</value>"},
		{"int64", int64(-1), `<value>-1</value>`},
		{"bool", true, `<value><boolean>1</boolean></value>`},
		{"set", []string{"a", "b"}, `<value><array><data><value>a</value><value>b</value></data></array></value>`},
		{"empty set", []string{}, `<value><array><data></data></array></value>`},
		{"map sorted", map[string]string{"b": "2", "a": "1"}, `<value><struct><member><name>a</name><value>1</value></member><member><name>b</name><value>2</value></member></struct></value>`},
		{"record ordered", record{{"z", false}, {"a", []any{int64(1)}}}, `<value><struct><member><name>z</name><value><boolean>0</boolean></value></member><member><name>a</name><value><array><data><value>1</value></data></array></value></member></struct></value>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			writeValue(&b, tt.v)
			if b.String() != tt.want {
				t.Errorf("got  %s\nwant %s", b.String(), tt.want)
			}
		})
	}
}

// TestRepliesDecodeWithKolo checks that kolo/xmlrpc, which the xapi client
// uses, decodes the dialect into typed fields.
func TestRepliesDecodeWithKolo(t *testing.T) {
	t.Parallel()
	var ok struct {
		Status string `xmlrpc:"Status"`
		Value  struct {
			Domid  string            `xmlrpc:"domid"`
			Tags   []string          `xmlrpc:"tags"`
			Other  map[string]string `xmlrpc:"other_config"`
			Templ  bool              `xmlrpc:"is_a_template"`
			Absent string            `xmlrpc:"absent"`
		} `xmlrpc:"Value"`
	}
	body := success(record{{"domid", int64(7)}, {"tags", []string{"x"}}, {"other_config", map[string]string{"k": "v"}}, {"is_a_template", true}, {"extra", "skipped"}})
	if err := xmlrpc.Response(body).Unmarshal(&ok); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if ok.Status != "Success" || ok.Value.Domid != "7" || ok.Value.Tags[0] != "x" || ok.Value.Other["k"] != "v" || !ok.Value.Templ {
		t.Errorf("decoded %+v", ok)
	}
	var fail struct {
		Status           string   `xmlrpc:"Status"`
		ErrorDescription []string `xmlrpc:"ErrorDescription"`
	}
	if err := xmlrpc.Response(failure([]string{"HOST_IS_SLAVE", "10.0.0.1"})).Unmarshal(&fail); err != nil {
		t.Fatal(err)
	}
	if fail.Status != "Failure" || !reflect.DeepEqual(fail.ErrorDescription, []string{"HOST_IS_SLAVE", "10.0.0.1"}) {
		t.Errorf("decoded %+v", fail)
	}
}

func TestHeaderWriter(t *testing.T) {
	t.Parallel()
	t.Run("with the first write", func(t *testing.T) {
		t.Parallel()
		var w writeRecorder
		hw := newHeaderWriter(&w, "H")
		hw.Write([]byte("a"))
		hw.Write([]byte("b"))
		hw.stop()
		time.Sleep(2 * headerDelay)
		if got := w.get(); !reflect.DeepEqual(got, []string{"Ha", "b"}) {
			t.Errorf("writes %q", got)
		}
	})
	t.Run("alone after the delay", func(t *testing.T) {
		t.Parallel()
		var w writeRecorder
		hw := newHeaderWriter(&w, "H")
		time.Sleep(4 * headerDelay)
		hw.Write([]byte("a"))
		if got := w.get(); !reflect.DeepEqual(got, []string{"H", "a"}) {
			t.Errorf("writes %q", got)
		}
	})
}

// writeRecorder records each Write.
type writeRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *writeRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}
