package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// poolPassword is the password of the simulated pools; it must never be
// printed.
const poolPassword = "Tr0ub4dor&3-xapi-pw"

// labConfig returns a configuration for the simulated pool p, trusted by
// its fingerprints, with alice allowed every VM and bob the web servers.
func labConfig(t *testing.T, p *xapitest.Pool, dir string) Config {
	t.Helper()
	_, aliceKey := newUserKey(t)
	_, bobKey := newUserKey(t)
	return Config{
		HostKeyFile: filepath.Join(dir, "host_key"),
		AuditLog:    filepath.Join(dir, "audit.jsonl"),
		Pools: []PoolConfig{{
			Name: "lab", URL: p.URL(), Username: p.Username(),
			PasswordFile: writeFile(t, dir, "lab.password", p.Password()+"\n"),
			TLS:          TLSConfig{Fingerprints: p.Fingerprints()},
		}},
		Users: []UserConfig{
			{Name: "alice", Keys: []string{aliceKey}, Allow: rulesOf("*")},
			{Name: "bob", Keys: []string{bobKey}, Allow: rulesOf("web-*")},
		},
	}
}

// mayOpen parses what check prints for each user into "POOL/NAME" rows,
// in order.
func mayOpen(t *testing.T, stdout string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	user := ""
	for line := range strings.Lines(stdout) {
		line = strings.TrimRight(line, "\n")
		if u, ok := strings.CutPrefix(line, "user "); ok {
			name, rest, _ := strings.Cut(u, " ")
			switch rest {
			case "may open:":
				user = name
			case "may open: nothing":
				user = ""
			default:
				t.Fatalf("unexpected line %q", line)
			}
			got[name] = []string{}
			continue
		}
		if user == "" || line == "" {
			user = ""
			continue
		}
		f := strings.Fields(line)
		if f[0] == "POOL" {
			continue
		}
		if len(f) != 5 {
			t.Fatalf("VM table row %q has %d columns, want 5", line, len(f))
		}
		got[user] = append(got[user], f[0]+"/"+f[1])
	}
	return got
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// pool configures the simulated pool; Password is always
		// poolPassword and PoolName "lab".
		pool xapitest.Options
		// edit, if set, changes the configuration of the pool.
		edit       func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig)
		wantCode   int
		wantStdout []string // each in stdout
		wantStderr []string // each in stderr
		wantOpen   map[string][]string
		// wantMasterFingerprint wants the master's fingerprint in stdout.
		wantMasterFingerprint bool
	}{
		{
			name:       "fingerprints",
			wantStdout: []string{"configuration OK: 1 pools, 2 users", "pool lab: logged in, master https://127.0.0.1:"},
			wantOpen: map[string][]string{
				"alice": {"lab/build-1", "lab/db-1", "lab/web-1", "lab/web-2"},
				"bob":   {"lab/web-1", "lab/web-2"},
			},
		},
		{
			name: "ca_file",
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.TLS = TLSConfig{CAFile: writeFile(t, dir, "ca.pem", string(p.CertsPEM()))}
			},
			wantStdout: []string{"pool lab: logged in"},
			wantOpen: map[string][]string{
				"alice": {"lab/build-1", "lab/db-1", "lab/web-1", "lab/web-2"},
				"bob":   {"lab/web-1", "lab/web-2"},
			},
		},
		{
			name: "insecure_skip_verify",
			pool: xapitest.Options{Members: -1},
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.TLS = TLSConfig{InsecureSkipVerify: true}
			},
			wantStdout: []string{"pool lab: logged in"},
			wantStderr: []string{"NOT verified"},
			wantOpen: map[string][]string{
				"alice": {"lab/build-1", "lab/db-1", "lab/web-1", "lab/web-2"},
				"bob":   {"lab/web-1", "lab/web-2"},
			},
		},
		{
			name: "wrong password",
			pool: xapitest.Options{AuthFailureDelay: 10 * time.Millisecond},
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.PasswordFile = writeFile(t, dir, "wrong.password", "not-"+poolPassword+"\n")
			},
			wantCode:   1,
			wantStdout: []string{"configuration OK", "pool lab: FAILED: ", "SESSION_AUTHENTICATION_FAILED"},
			wantStderr: []string{"xenbastion: 1 of 1 pools could not be reached"},
		},
		{
			name: "fingerprint mismatch",
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.TLS = TLSConfig{Fingerprints: []string{fp}}
			},
			wantCode: 1,
			// The error names the host's fingerprint, so that an
			// administrator can check it and pin it.
			wantStdout:            []string{"pool lab: FAILED: ", "is not among the pinned fingerprints"},
			wantStderr:            []string{"xenbastion: 1 of 1 pools could not be reached"},
			wantMasterFingerprint: true,
		},
		{
			name: "unreachable",
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.URL = "https://127.0.0.1:1"
			},
			wantCode:   1,
			wantStdout: []string{"pool lab: FAILED: "},
			wantStderr: []string{"xenbastion: 1 of 1 pools could not be reached"},
		},
		{
			name: "bad config",
			edit: func(t *testing.T, p *xapitest.Pool, dir string, c *PoolConfig) {
				c.URL = "http://" + strings.TrimPrefix(p.URL(), "https://")
			},
			wantCode:   1,
			wantStderr: []string{"xenbastion: ", "xenbastion.yaml: pool lab: url", "must be https://"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.pool
			opts.PoolName = "lab"
			opts.Password = poolPassword
			if opts.AuthFailureDelay == 0 {
				opts.AuthFailureDelay = -1
			}
			p := xapitest.NewTestPool(t, opts)
			vms := p.AddDemoVMs()
			dir := t.TempDir()
			c := labConfig(t, p, dir)
			if tt.edit != nil {
				tt.edit(t, p, dir, &c.Pools[0])
			}
			path := writeConfig(t, dir, c)

			var stdout, stderr bytes.Buffer
			code := run([]string{"check", "--config", path}, &stdout, &stderr)
			t.Logf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout does not contain %q", w)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q", w)
				}
			}
			if out := stdout.String() + stderr.String(); strings.Contains(out, poolPassword) {
				t.Errorf("the XAPI password %q was printed", poolPassword)
			}
			if tt.wantMasterFingerprint && !strings.Contains(stdout.String(), p.Master().Fingerprint()) {
				t.Errorf("stdout does not name the master's fingerprint %s", p.Master().Fingerprint())
			}
			if tt.wantOpen != nil {
				if got := mayOpen(t, stdout.String()); !reflect.DeepEqual(got, tt.wantOpen) {
					t.Errorf("users may open %v, want %v", got, tt.wantOpen)
				}
				// The template and the snapshot are named web-1 too: the
				// row for web-1 must be the running VM.
				for _, vm := range vms[4:] {
					if strings.Contains(stdout.String(), vm.UUID) {
						t.Errorf("stdout lists %s %s (%s)", vm.Name, vm.UUID, vm.PowerState)
					}
				}
				if !strings.Contains(stdout.String(), vms[0].UUID) {
					t.Errorf("stdout does not list web-1 %s", vms[0].UUID)
				}
			}
		})
	}
}

// TestCheckFailedPoolLogsInOnce checks that check tries a pool whose login
// failed only once: xapi delays each failed login by 5 s, and directory
// accounts may be locked out after a few failures.
func TestCheckFailedPoolLogsInOnce(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{PoolName: "lab", Password: poolPassword, AuthFailureDelay: time.Millisecond})
	dir := t.TempDir()
	c := labConfig(t, p, dir)
	c.Pools[0].PasswordFile = writeFile(t, dir, "wrong.password", "wrong\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config", writeConfig(t, dir, c)}, &stdout, &stderr); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if n := p.CallCount("session.login_with_password"); n != 1 {
		t.Errorf("check tried %d logins to a pool whose login failed, want 1", n)
	}
	if !strings.Contains(stdout.String(), "not checked: pool lab could not be reached") {
		t.Errorf("stdout does not say the pool was not checked:\n%s", stdout.String())
	}
}

// TestCheckUser: check --user shows one user, with the rule behind each
// console, groups and deny rules included.
func TestCheckUser(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{PoolName: "lab", AuthFailureDelay: -1})
	p.AddDemoVMs()
	dir := t.TempDir()
	c := labConfig(t, p, dir)
	c.Groups = []GroupConfig{{Name: "ops", Members: []string{"bob"}, Allow: rulesOf("host:host-0"), Deny: rulesOf("web-2")}}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config", writeConfig(t, dir, c), "--user", "bob"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"RULE", "web-1", "user bob: allow web-*", "host:host-0", "group ops: allow host:host-0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"web-2", "user alice"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, out)
		}
	}
	if code := run([]string{"check", "--config", writeConfig(t, dir, c), "--user", "nobody"}, &stdout, &stderr); code != 1 {
		t.Errorf("--user nobody: exit %d, want 1", code)
	}
}

// TestCheckFingerprints: check prints every host's certificate fingerprint,
// so that an admin can pin them; with trust on first use it records the
// master's.
func TestCheckFingerprints(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{PoolName: "lab", AuthFailureDelay: -1})
	p.AddDemoVMs()
	dir := t.TempDir()
	c := labConfig(t, p, dir)
	c.Pools[0].TLS = TLSConfig{TrustOnFirstUse: true}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config", writeConfig(t, dir, c)}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, h := range p.Hosts() {
		if !strings.Contains(stdout.String(), h.Fingerprint()) {
			t.Errorf("output lacks host %s's fingerprint %s:\n%s", h.Hostname(), h.Fingerprint(), stdout.String())
		}
	}
	known, err := os.ReadFile(filepath.Join(dir, "xapi_known_hosts"))
	if err != nil || !strings.Contains(string(known), p.Master().Fingerprint()) {
		t.Errorf("xapi_known_hosts: %v\n%s", err, known)
	}
}
