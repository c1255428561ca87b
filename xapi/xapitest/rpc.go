package xapitest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is XAPI's XML-RPC dialect, as ocaml-rpc writes and reads it.
//
// Decoded values are string, int64, bool, float64, nil, []any and
// map[string]any. Values to encode are string (written bare), int and
// int64 (bare digits, as xapi writes 64-bit ints), bool, []string, []any,
// record (a struct with ordered members), map[string]string (a struct with
// sorted keys) and nil (an empty string, which is also how void is written).

// member is one member of a record.
type member struct {
	name  string
	value any
}

// record is an XML-RPC struct whose members keep their order, as xapi's
// records do.
type record []member

// get returns the value of the member called name.
func (r record) get(name string) (any, bool) {
	for _, m := range r {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

// errMalformed is wrapped by every error of parseMethodCall.
var errMalformed = errors.New("malformed XML-RPC call")

// parseMethodCall decodes a methodCall document. It accepts typed values
// (<string>, <int>, <i4>, <i8>, <boolean>, <double>, <array>, <struct>,
// <nil/>, <base64>, <dateTime.iso8601>) and bare <value>text</value>
// strings, as xapi does.
func parseMethodCall(body []byte) (method string, params []any, err error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	start, err := nextStart(d)
	if err != nil {
		return "", nil, err
	}
	if start.Name.Local != "methodCall" {
		return "", nil, fmt.Errorf("%w: root element <%s>, want <methodCall>", errMalformed, start.Name.Local)
	}
	sawName := false
	for {
		tok, err := nextChild(d)
		if err != nil {
			return "", nil, err
		}
		if tok == nil { // </methodCall>
			break
		}
		switch tok.Name.Local {
		case "methodName":
			if method, err = readText(d); err != nil {
				return "", nil, err
			}
			method = strings.TrimSpace(method)
			sawName = true
		case "params":
			if params, err = readParams(d); err != nil {
				return "", nil, err
			}
		default:
			return "", nil, fmt.Errorf("%w: unexpected <%s> in <methodCall>", errMalformed, tok.Name.Local)
		}
	}
	if !sawName || method == "" {
		return "", nil, fmt.Errorf("%w: no methodName", errMalformed)
	}
	return method, params, nil
}

// nextStart returns the first start element, skipping the prolog.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, fmt.Errorf("%w: %v", errMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, fmt.Errorf("%w: text outside an element", errMalformed)
			}
		}
	}
}

// nextChild returns the next child element of the current element, or nil
// at its end. Whitespace between elements is skipped; other text is an
// error.
func nextChild(d *xml.Decoder) (*xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return &t, nil
		case xml.EndElement:
			return nil, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: unexpected text %q", errMalformed, string(t))
			}
		}
	}
}

// readText returns the text of the current element up to its end; a child
// element is an error.
func readText(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", fmt.Errorf("%w: %v", errMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			return "", fmt.Errorf("%w: unexpected <%s> in text", errMalformed, t.Name.Local)
		case xml.EndElement:
			return b.String(), nil
		}
	}
}

// readParams reads <param><value>...</value></param>* up to </params>.
func readParams(d *xml.Decoder) ([]any, error) {
	params := []any{}
	for {
		p, err := nextChild(d)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return params, nil
		}
		if p.Name.Local != "param" {
			return nil, fmt.Errorf("%w: unexpected <%s> in <params>", errMalformed, p.Name.Local)
		}
		v, err := expectValue(d)
		if err != nil {
			return nil, err
		}
		if end, err := nextChild(d); err != nil || end != nil {
			return nil, fmt.Errorf("%w: <param> must hold one <value>", errMalformed)
		}
		params = append(params, v)
	}
}

// expectValue reads one <value> element that must come next.
func expectValue(d *xml.Decoder) (any, error) {
	v, err := nextChild(d)
	if err != nil {
		return nil, err
	}
	if v == nil || v.Name.Local != "value" {
		return nil, fmt.Errorf("%w: want <value>", errMalformed)
	}
	return readValue(d)
}

// readValue reads the content of a <value> whose start has been read, up to
// and including </value>.
func readValue(d *xml.Decoder) (any, error) {
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			return text.String(), nil // a bare string, possibly empty
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, fmt.Errorf("%w: text and <%s> mixed in <value>", errMalformed, t.Name.Local)
			}
			v, err := readTyped(d, t.Name.Local)
			if err != nil {
				return nil, err
			}
			if end, err := nextChild(d); err != nil || end != nil {
				return nil, fmt.Errorf("%w: <value> must hold one typed value", errMalformed)
			}
			return v, nil
		}
	}
}

// readTyped reads a typed value whose start tag (name) has been read, up to
// and including its end tag.
func readTyped(d *xml.Decoder, name string) (any, error) {
	switch name {
	case "string", "base64", "dateTime.iso8601":
		return readText(d)
	case "int", "i4", "i8":
		s, err := readText(d)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: <%s>%s</%s>", errMalformed, name, s, name)
		}
		return n, nil
	case "boolean":
		s, err := readText(d)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("%w: <boolean>%s</boolean>", errMalformed, s)
	case "double":
		s, err := readText(d)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: <double>%s</double>", errMalformed, s)
		}
		return f, nil
	case "nil":
		if end, err := nextChild(d); err != nil || end != nil {
			return nil, fmt.Errorf("%w: <nil> must be empty", errMalformed)
		}
		return nil, nil
	case "array":
		return readArray(d)
	case "struct":
		return readStruct(d)
	}
	return nil, fmt.Errorf("%w: unknown type <%s>", errMalformed, name)
}

// readArray reads <data><value>...</value>*</data></array>; an empty
// <array/> is accepted.
func readArray(d *xml.Decoder) (any, error) {
	data, err := nextChild(d)
	if err != nil {
		return nil, err
	}
	out := []any{}
	if data == nil {
		return out, nil
	}
	if data.Name.Local != "data" {
		return nil, fmt.Errorf("%w: want <data> in <array>", errMalformed)
	}
	for {
		v, err := nextChild(d)
		if err != nil {
			return nil, err
		}
		if v == nil {
			break
		}
		if v.Name.Local != "value" {
			return nil, fmt.Errorf("%w: want <value> in <data>", errMalformed)
		}
		x, err := readValue(d)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	if end, err := nextChild(d); err != nil || end != nil {
		return nil, fmt.Errorf("%w: <array> must hold one <data>", errMalformed)
	}
	return out, nil
}

// readStruct reads <member><name>..</name><value>..</value></member>* up to
// </struct>.
func readStruct(d *xml.Decoder) (any, error) {
	out := map[string]any{}
	for {
		m, err := nextChild(d)
		if err != nil {
			return nil, err
		}
		if m == nil {
			return out, nil
		}
		if m.Name.Local != "member" {
			return nil, fmt.Errorf("%w: want <member> in <struct>", errMalformed)
		}
		n, err := nextChild(d)
		if err != nil {
			return nil, err
		}
		if n == nil || n.Name.Local != "name" {
			return nil, fmt.Errorf("%w: want <name> in <member>", errMalformed)
		}
		name, err := readText(d)
		if err != nil {
			return nil, err
		}
		v, err := expectValue(d)
		if err != nil {
			return nil, err
		}
		if end, err := nextChild(d); err != nil || end != nil {
			return nil, fmt.Errorf("%w: <member> must hold <name> and <value>", errMalformed)
		}
		out[name] = v
	}
}

// success returns the reply document of a successful call.
func success(v any) []byte {
	return response(record{{"Status", "Success"}, {"Value", v}})
}

// failure returns the reply document of a failed call: code and its
// parameters in ErrorDescription.
func failure(desc []string) []byte {
	return response(record{{"Status", "Failure"}, {"ErrorDescription", desc}})
}

func response(v record) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><methodResponse><params><param>`)
	writeValue(&b, v)
	b.WriteString(`</param></params></methodResponse>`)
	return b.Bytes()
}

// writeValue writes v as ocaml-rpc does: strings bare, ints bare, booleans
// as <boolean>, sets as <array>, records and maps as <struct>. It panics on
// a type it does not know, which is a bug in this package.
func writeValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("<value></value>")
	case string:
		b.WriteString("<value>")
		escape(b, v)
		b.WriteString("</value>")
	case int:
		fmt.Fprintf(b, "<value>%d</value>", v)
	case int64:
		fmt.Fprintf(b, "<value>%d</value>", v)
	case bool:
		if v {
			b.WriteString("<value><boolean>1</boolean></value>")
		} else {
			b.WriteString("<value><boolean>0</boolean></value>")
		}
	case []string:
		b.WriteString("<value><array><data>")
		for _, s := range v {
			writeValue(b, s)
		}
		b.WriteString("</data></array></value>")
	case []any:
		b.WriteString("<value><array><data>")
		for _, x := range v {
			writeValue(b, x)
		}
		b.WriteString("</data></array></value>")
	case record:
		b.WriteString("<value><struct>")
		for _, m := range v {
			writeMember(b, m.name, m.value)
		}
		b.WriteString("</struct></value>")
	case map[string]string:
		b.WriteString("<value><struct>")
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			writeMember(b, k, v[k])
		}
		b.WriteString("</struct></value>")
	default:
		panic(fmt.Sprintf("xapitest: cannot encode %T", v))
	}
}

func writeMember(b *bytes.Buffer, name string, v any) {
	b.WriteString("<member><name>")
	escape(b, name)
	b.WriteString("</name>")
	writeValue(b, v)
	b.WriteString("</member>")
}

// escape writes s as ocaml-rpc's encode does: <, >, & and " become
// entities, control characters other than tab, LF and CR are dropped, and
// every other byte is kept.
func escape(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case c == '&':
			b.WriteString("&amp;")
		case c == '"':
			b.WriteString("&quot;")
		case c >= 0x20 || c == '\t' || c == '\n' || c == '\r':
			b.WriteByte(c)
		}
	}
}
