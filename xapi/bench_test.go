package xapi

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

// vmRecordStruct is the VM record of vmRecordReply, without the reply
// around it.
var vmRecordStruct = vmRecordReply[strings.Index(vmRecordReply, "<member><name>uuid</name>")-len("<struct>\n") : strings.LastIndex(vmRecordReply, "</struct></value></member>")+len("</struct>")]

// BenchmarkDecodeVMRecord decodes one VM.get_record reply, what a stale
// cache entry costs.
func BenchmarkDecodeVMRecord(b *testing.B) {
	data := []byte(vmRecordReply)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var r vmRecord
		if err := decodeReply(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAllRecords decodes a VM.get_all_records reply for a pool
// of 1,000 VMs, what listing a pool costs.
func BenchmarkDecodeAllRecords(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`<?xml version="1.0"?><methodResponse><params><param><value><struct>
<member><name>Status</name><value>Success</value></member>
<member><name>Value</name><value><struct>`)
	for i := range 1000 {
		fmt.Fprintf(&sb, "<member><name>OpaqueRef:vm%d</name><value>%s</value></member>\n", i, vmRecordStruct)
	}
	sb.WriteString(`</struct></value></member></struct></value></param></params></methodResponse>`)
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m map[string]vmRecord
		if err := decodeReply(data, &m); err != nil {
			b.Fatal(err)
		}
		if len(m) != 1000 {
			b.Fatalf("%d records", len(m))
		}
	}
}

// BenchmarkReadConnectReply parses xapi's reply to a console CONNECT, with
// the console's first bytes behind it.
func BenchmarkReadConnectReply(b *testing.B) {
	reply := "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\nRFB 003.008\n"
	r := strings.NewReader(reply)
	br := bufio.NewReaderSize(r, 4<<10)
	for b.Loop() {
		r.Reset(reply)
		br.Reset(r)
		if err := ReadConnectReply(br); err != nil {
			b.Fatal(err)
		}
	}
}
