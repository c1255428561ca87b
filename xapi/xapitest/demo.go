package xapitest

// AddDemoVMs adds a small set of guest VMs, for "xenbastion demo" and for
// tests, and returns them in this order:
//
//   - web-1: a running PV guest (rfb and vt100 consoles) on the master,
//     tagged "web";
//   - web-2: a running PV guest on host 1 (the master in a one-host pool),
//     tagged "web";
//   - db-1: a running HVM guest (rfb console only) on host 1, tagged "db";
//   - build-1: a halted PV guest;
//   - a template and a snapshot both named "web-1", which
//     VM.get_by_name_label("web-1") returns along with the running web-1.
func (p *Pool) AddDemoVMs() []VMInfo {
	member := 1
	if len(p.hosts) < 2 {
		member = 0
	}
	specs := []VMSpec{
		{Name: "web-1", Description: "Web server (PV)", Host: 0, Tags: []string{"web"}},
		{Name: "web-2", Description: "Web server (PV)", Host: member, Tags: []string{"web"}},
		{Name: "db-1", Description: "Database server (HVM)", Host: member, Consoles: []string{protoRFB}, Tags: []string{"db"}},
		{Name: "build-1", Description: "Build machine (PV)", PowerState: powerHalted},
		{Name: "web-1", Description: "Template made from web-1", Template: true},
		{Name: "web-1", Description: "Snapshot of web-1", Snapshot: true,
			OtherConfig: map[string]string{"snapshot_of": "web-1"}},
	}
	vms := make([]VMInfo, len(specs))
	for i, s := range specs {
		vms[i] = p.AddVM(s)
	}
	return vms
}

// DemoPool starts a pool (see [NewPool]) with the demo VMs of
// [Pool.AddDemoVMs].
func DemoPool(opts Options) (*Pool, error) {
	p, err := NewPool(opts)
	if err != nil {
		return nil, err
	}
	p.AddDemoVMs()
	return p, nil
}
