package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
)

// fp is a well-formed SHA-256 fingerprint that no host has.
const fp = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9"

// newUserKey returns a fresh ed25519 key and its authorized_keys line,
// without the newline.
func newUserKey(t *testing.T) (gossh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(signer.PublicKey())), "\n")
	return signer, line + " " + t.Name()
}

// writeFile writes data to dir/name with mode 0600 and returns its path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeConfig writes c as YAML to a new file and returns its path.
func writeConfig(t *testing.T, dir string, c Config) string {
	t.Helper()
	data, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "xenbastion.yaml", string(data))
}

func TestParseConfigFull(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "full.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseConfig(data, path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:      "127.0.0.1:2022",
		HostKeyFile: "/var/lib/xenbastion/ssh_host_ed25519_key",
		AuditLog:    "/var/log/xenbastion/audit.jsonl",
		Pools: []PoolConfig{
			{
				Name: "lab", URL: "https://xcp-lab.example.com", Username: "root",
				PasswordFile: "/etc/xenbastion/lab.password",
				TLS: TLSConfig{Fingerprints: []string{
					fp,
					"sha256 Fingerprint=0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:fa",
				}},
			},
			{
				Name: "prod", URL: "https://10.0.0.5:8443", Username: "bastion",
				PasswordEnv: "XAPI_PROD_PASSWORD",
				TLS:         TLSConfig{CAFile: "testdata/ca.pem"},
			},
			{
				Name: "old", URL: "https://[2001:db8::1]", Username: "root",
				PasswordEnv: "XAPI_OLD_PASSWORD",
				TLS:         TLSConfig{InsecureSkipVerify: true},
			},
		},
		Users: []UserConfig{
			{
				Name:               "alice",
				AuthorizedKeysFile: "/home/alice/.ssh/authorized_keys",
				Keys:               []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81 alice@example.com"},
				Allow:              rulesOf("*"),
			},
			{
				Name:  "carol",
				Keys:  []string{"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBP/anWHO7JaeObNkcCssu7IgOOX1P7S9SYF6EeTbur7ztuFbyZk5Ln7Tm4P8vBh4nJsteI76K11z5G+kU8zP3Ig= carol@example.com"},
				Allow: rulesOf("lab/web-*", "prod/db-?", "*/build-[0-9]"),
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseConfig(%s) =\n%+v\nwant\n%+v", path, got, want)
	}
}

// Building blocks of configurations for the tests below.
const (
	head    = "host_key_file: /var/lib/xenbastion/host_key\naudit_log: \"-\"\n"
	labPool = "pools:\n  - {name: lab, url: \"https://xcp-lab\", username: root, password_file: /etc/pw, tls: {fingerprints: [\"" + fp + "\"]}}\n"
	alice   = "users:\n  - {name: alice, keys: [\"ssh-ed25519 AAAA\"], allow: [\"*\"]}\n"
)

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		yaml       string
		wantListen string
		wantUsers  int
	}{
		{name: "no listen", yaml: head + labPool + alice, wantListen: ":2222", wantUsers: 1},
		{name: "empty listen", yaml: "listen: \"\"\n" + head + labPool, wantListen: ":2222"},
		{name: "listen kept", yaml: "listen: \"[::1]:22\"\n" + head + labPool, wantListen: "[::1]:22"},
		{name: "no users", yaml: head + labPool + "users: []\n", wantListen: ":2222"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(tt.yaml), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tt.wantListen {
				t.Errorf("Listen = %q, want %q", c.Listen, tt.wantListen)
			}
			if len(c.Users) != tt.wantUsers {
				t.Errorf("%d users, want %d", len(c.Users), tt.wantUsers)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	notPEM := writeFile(t, t.TempDir(), "ca.pem", "not a certificate\n")
	tests := []struct {
		name   string
		yaml   string
		want   []string // each in the message
		wantIs error    // if not nil, errors.Is(err, wantIs)
	}{
		{
			name: "unknown top-level key",
			yaml: head + labPool + "lsiten: \":22\"\n",
			want: []string{"test.yaml: line 5: ", `unknown key "lsiten"`},
		},
		{
			name: "unknown key in tls",
			yaml: head + // lines 1-2
				"pools:\n" + // 3
				"  - name: lab\n" + // 4
				"    url: https://xcp-lab\n" + // 5
				"    username: root\n" + // 6
				"    password_file: /etc/pw\n" + // 7
				"    tls:\n" + // 8
				"      fingerprint: " + fp + "\n", // 9
			want: []string{"test.yaml: line 9: ", `unknown key "fingerprint"`},
		},
		{
			name: "two unknown keys",
			yaml: head + labPool + "users:\n  - name: alice\n    key: [x]\n    alow: [\"*\"]\n",
			want: []string{"test.yaml: line 7: ", `unknown key "key"`, "test.yaml: line 8: ", `unknown key "alow"`},
		},
		{
			name: "wrong type",
			yaml: head + labPool + "users:\n  - name: alice\n    keys: [x]\n    allow: \"*\"\n",
			want: []string{"test.yaml: line 8: ", "cannot unmarshal"},
		},
		{name: "not YAML", yaml: "pools: [\n", want: []string{"test.yaml: "}},
		{name: "a second document", yaml: head + labPool + "---\nlsiten: x\n", want: []string{"test.yaml: one YAML document expected"}},
		{name: "url without host", yaml: head + strings.Replace(labPool, "https://xcp-lab", "https://", 1), want: []string{`url "https://": must be https://HOST[:PORT]`}},
		{name: "user name with a space", yaml: head + labPool + "users:\n  - name: alice smith\n    keys: [x]\n", want: []string{`users[0].name "alice smith": not a login name`}},
		{name: "empty file", yaml: "", want: []string{"test.yaml: empty configuration"}},
		{name: "only comments", yaml: "# nothing here\n\n", want: []string{"test.yaml: empty configuration"}},
		{name: "missing host_key_file", yaml: "audit_log: \"-\"\n" + labPool, want: []string{"test.yaml: host_key_file: required"}},
		{name: "missing audit_log", yaml: "host_key_file: hk\n" + labPool, want: []string{"test.yaml: audit_log: required"}},
		{name: "no pools", yaml: head, want: []string{"test.yaml: pools: at least one pool is required"}},
		{name: "unknown cipher", yaml: head + labPool + "ciphers: [aes128-gcm@openssh.com, arcfour]\n", want: []string{`ciphers[1]: "arcfour" is not one of aes128-gcm@openssh.com`}},
		{name: "empty pools", yaml: head + "pools: []\n", want: []string{"pools: at least one pool is required"}},
		{
			name: "pool without name",
			yaml: head + "pools:\n  - {url: \"https://xcp\", username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{"pools[0].name: required"},
		},
		{
			name: "pool name with slash",
			yaml: head + "pools:\n  - {name: a/b, url: \"https://xcp\", username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{`pools[0].name "a/b": no spaces, slashes or colons`},
		},
		{
			name: "pool name with colon",
			yaml: head + "pools:\n  - {name: \"eu:lab\", url: \"https://xcp\", username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{`pools[0].name "eu:lab": no spaces, slashes or colons`},
		},
		{
			name: "pool without url",
			yaml: head + "pools:\n  - {name: lab, username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{"pool lab: url: required"},
		},
		{
			name: "http url",
			yaml: head + "pools:\n  - {name: lab, url: \"http://xcp\", username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{`pool lab: url "http://xcp": must be https://`},
		},
		{
			name: "pool without username",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{"pool lab: username: required"},
		},
		{
			name: "password_file and password_env",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw, password_env: PW, tls: {insecure_skip_verify: true}}\n",
			want: []string{"pool lab: set exactly one of password_file and password_env"},
		},
		{
			name: "no password",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, tls: {insecure_skip_verify: true}}\n",
			want: []string{"pool lab: set exactly one of password_file and password_env"},
		},
		{
			name:   "no TLS trust",
			yaml:   head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw}\n",
			want:   []string{"pool lab: ", "tls.fingerprints", "openssl x509 -noout -fingerprint -sha256"},
			wantIs: xapi.ErrNoTrust,
		},
		{
			name: "two trust choices",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw, tls: {fingerprints: [\"" + fp + "\"], insecure_skip_verify: true}}\n",
			want: []string{"pool lab: choose only one of tls.fingerprints"},
		},
		{
			name: "bad fingerprint",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw, tls: {fingerprints: [\"AB:CD\"]}}\n",
			want: []string{"pool lab: tls.fingerprints: ", `"AB:CD"`, "not a SHA-256 fingerprint"},
		},
		{
			name:   "missing ca_file",
			yaml:   head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw, tls: {ca_file: testdata/nothing.pem}}\n",
			want:   []string{"pool lab: tls.ca_file: ", "testdata/nothing.pem"},
			wantIs: fs.ErrNotExist,
		},
		{
			name: "ca_file without certificates",
			yaml: head + "pools:\n  - {name: lab, url: \"https://xcp\", username: root, password_file: pw, tls: {ca_file: " + notPEM + "}}\n",
			want: []string{"pool lab: tls.ca_file " + notPEM + ": no PEM certificate found"},
		},
		{
			name: "duplicate pool",
			yaml: head + labPool + "  - {name: lab, url: \"https://xcp2\", username: root, password_file: pw, tls: {insecure_skip_verify: true}}\n",
			want: []string{`pools[1].name: pool "lab" listed twice`},
		},
		{
			name: "user without name",
			yaml: head + labPool + "users:\n  - {keys: [x], allow: [\"*\"]}\n",
			want: []string{"users[0].name: required"},
		},
		{
			name: "duplicate user",
			yaml: head + labPool + alice + "  - {name: alice, keys: [y]}\n",
			want: []string{`users[1].name: user "alice" listed twice`},
		},
		{
			name: "user without keys",
			yaml: head + labPool + "users:\n  - {name: alice, allow: [\"*\"]}\n",
			want: []string{"user alice: no keys: set authorized_keys_file or keys"},
		},
		{
			name: "allow names an unknown pool",
			yaml: head + labPool + "users:\n  - {name: alice, keys: [x], allow: [\"lab/*\", \"nopool/web-*\"]}\n",
			want: []string{`user alice: rule "nopool/web-*": no pool named "nopool"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig([]byte(tt.yaml), "test.yaml")
			if err == nil {
				t.Fatalf("parseConfig = %+v, want an error", c)
			}
			if c != nil {
				t.Errorf("parseConfig returned a config with its error")
			}
			if !strings.HasPrefix(err.Error(), "test.yaml: ") {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "ok.yaml", head+labPool+alice)
	if _, err := loadConfig(path); err != nil {
		t.Errorf("loadConfig(%s): %v", path, err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	_, err := loadConfig(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("loadConfig(%s) = %v, want an error naming the file and wrapping fs.ErrNotExist", missing, err)
	}
	bad := writeFile(t, dir, "bad.yaml", head+labPool+"users:\n  - {name: bob}\n")
	if _, err := loadConfig(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": user bob: ") {
		t.Errorf("loadConfig(%s) = %v, want an error starting with the file name", bad, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "full.yaml")); err == nil {
		f.Add(data)
	}
	for _, s := range []string{"", head + labPool + alice, head + labPool + "lsiten: x\n", "pools: [\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// tls.ca_file is read: keep the fuzzer away from devices.
		if bytes.Contains(data, []byte("/dev")) || bytes.Contains(data, []byte("/proc")) {
			t.Skip()
		}
		c, err := parseConfig(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Errorf("parseConfig returned a config with its error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Errorf("error %q does not start with the file name", err)
			}
			return
		}
		if c.Listen == "" || c.HostKeyFile == "" || c.AuditLog == "" || len(c.Pools) == 0 {
			t.Errorf("parseConfig accepted an incomplete config: %+v", c)
		}
		for _, p := range c.Pools {
			if p.Name == "" || !strings.HasPrefix(p.URL, "https://") || p.Username == "" {
				t.Errorf("parseConfig accepted an incomplete pool: %+v", p)
			}
		}
	})
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aliceFile, aliceFileLine := newUserKey(t)
	aliceInline, aliceInlineLine := newUserKey(t)
	bobKey, bobLine := newUserKey(t)
	stranger, _ := newUserKey(t)
	path := writeFile(t, dir, "alice.keys", "# alice's keys\n\n"+aliceFileLine+"\r\n")
	c := &Config{Users: []UserConfig{
		{Name: "alice", AuthorizedKeysFile: path, Keys: []string{aliceInlineLine}, Allow: rulesOf("*")},
		{Name: "bob", Keys: []string{bobLine}, Allow: rulesOf("lab/web-*")},
	}}
	policy, err := c.policy(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		user string
		key  gossh.Signer
		want bool
	}{
		{name: "alice file key", user: "alice", key: aliceFile, want: true},
		{name: "alice inline key", user: "alice", key: aliceInline, want: true},
		{name: "alice with bob's key", user: "alice", key: bobKey},
		{name: "bob", user: "bob", key: bobKey, want: true},
		{name: "bob with alice's key", user: "bob", key: aliceFile},
		{name: "stranger", user: "alice", key: stranger},
		{name: "unknown user", user: "mallory", key: bobKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Authenticate(tt.user, tt.key.PublicKey(), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2222}, time.Now())
			if got := err == nil; got != tt.want {
				t.Errorf("user %s Authenticate = %v, want allowed %v", tt.user, err, tt.want)
			}
		})
	}
	if u := policy.User("bob"); u == nil || !reflect.DeepEqual(u.Allow, []bastion.Rule{{Pattern: "lab/web-*"}}) {
		t.Errorf("bob = %+v, want allow [lab/web-*]", u)
	}
}

func TestPolicyErrors(t *testing.T) {
	t.Parallel()
	_, line := newUserKey(t)
	dir := t.TempDir()
	tests := []struct {
		name     string
		file     string // if not "", the content of alice's authorized_keys_file
		isDir    bool   // the file's path is a directory (a missing file is no keys)
		keys     []string
		allow    []string
		want     []string // each in the message
		wantLine int      // if not 0, want a *keys.ParseError for this line
		wantIs   error
	}{
		{
			name:     "bad line in file",
			file:     "# alice\n" + line + "\nssh-ed25519 AAAA!!!! broken\n",
			want:     []string{"user alice: ", "alice.keys:3: not a valid authorized key"},
			wantLine: 3,
		},
		{
			name:     "bad inline key",
			keys:     []string{line, "ssh-ed25519"},
			want:     []string{"user alice keys[1]:1: not a valid authorized key"},
			wantLine: 1,
		},
		{
			name: "unsupported option in file",
			file: line + "\n" + `command="/bin/sh" ` + line + "\n",
			want: []string{"user alice: ", "alice.keys:2: ", `unsupported option "command"`},
		},
		{
			name: "unsupported option inline",
			keys: []string{`no-pty,from="10.0.0.1" ` + line},
			want: []string{"user alice keys[0]:1: ", `unsupported option "no-pty"`},
		},
		{
			name:  "unreadable file",
			isDir: true,
			want:  []string{"user alice: ", "alice.keys"},
		},
		{
			name:  "bad allow glob",
			keys:  []string{line},
			allow: []string{"web-["},
			want:  []string{"user alice: allow: ", `"web-["`},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := UserConfig{Name: "alice", Keys: tt.keys, Allow: rulesOf(tt.allow...)}
			if tt.file != "" || tt.isDir {
				u.AuthorizedKeysFile = filepath.Join(dir, string(rune('a'+i)), "alice.keys")
				if err := os.MkdirAll(filepath.Dir(u.AuthorizedKeysFile), 0o700); err != nil {
					t.Fatal(err)
				}
				if tt.isDir {
					os.Mkdir(u.AuthorizedKeysFile, 0o700)
				} else {
					writeFile(t, filepath.Dir(u.AuthorizedKeysFile), "alice.keys", tt.file)
				}
			}
			c := &Config{Users: []UserConfig{u}}
			p, err := c.policy(slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatalf("policy = %+v, want an error", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.wantLine != 0 {
				var pe *keys.ParseError
				if !errors.As(err, &pe) || pe.Line != tt.wantLine {
					t.Errorf("error %v, want a *keys.ParseError for line %d", err, tt.wantLine)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name   string
		data   string // written to the file unless missing
		want   string
		wantIs error
	}{
		{name: "newline", data: "s3cret\n", want: "s3cret"},
		{name: "CRLF", data: "s3cret\r\n", want: "s3cret"},
		{name: "no newline", data: "s3cret", want: "s3cret"},
		{name: "spaces kept", data: " s3 cret \n", want: " s3 cret "},
		{name: "missing", wantIs: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tt.name)
			if tt.wantIs == nil {
				writeFile(t, dir, tt.name, tt.data)
			}
			got, err := PoolConfig{Name: "lab", PasswordFile: path}.password()
			if tt.wantIs != nil {
				if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), "pool lab: password_file: ") {
					t.Errorf("password() = %q, %v; want an error naming the pool and password_file, wrapping %v", got, err, tt.wantIs)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("password() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestPasswordEnv sets environment variables, so it cannot be parallel.
func TestPasswordEnv(t *testing.T) {
	t.Setenv("XENBASTION_TEST_PASSWORD", "s3cret")
	t.Setenv("XENBASTION_TEST_EMPTY", "")
	const unset = "XENBASTION_TEST_UNSET_PASSWORD"
	if v, ok := os.LookupEnv(unset); ok {
		t.Fatalf("$%s is set (%q); the test needs it unset", unset, v)
	}
	tests := []struct {
		name    string
		env     string
		want    string
		wantErr string
	}{
		{name: "set", env: "XENBASTION_TEST_PASSWORD", want: "s3cret"},
		{name: "empty", env: "XENBASTION_TEST_EMPTY", wantErr: "pool lab: password_env: $XENBASTION_TEST_EMPTY is not set or empty"},
		{name: "unset", env: unset, wantErr: "pool lab: password_env: $" + unset + " is not set or empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PoolConfig{Name: "lab", PasswordEnv: tt.env}.password()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("password() = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("password() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// rulesOf makes allow rules from plain patterns.
func rulesOf(patterns ...string) []RuleConfig {
	rs := make([]RuleConfig, len(patterns))
	for i, p := range patterns {
		rs[i] = RuleConfig{Pattern: p}
	}
	return rs
}

// TestPolicyUserWithoutKeys: emptying a user's key file (commenting out the
// last line) or deleting it, as sshd takes a missing authorized_keys, is how
// their last key is revoked; the policy loads, so that a reload takes it,
// with a warning, and the key is refused.
func TestPolicyUserWithoutKeys(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		revoke func(path, line string)
	}{
		{"key commented out", func(path, line string) { os.WriteFile(path, []byte("# "+line+"   (revoked: laptop stolen)\n"), 0o644) }},
		{"file deleted", func(path, _ string) { os.Remove(path) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			key, line := newUserKey(t)
			path := writeFile(t, dir, "alice.keys", line+"\n")
			c := &Config{Users: []UserConfig{{Name: "alice", AuthorizedKeysFile: path, Allow: rulesOf("*")}}}
			tt.revoke(path, line)
			var logged strings.Builder
			p, err := c.policy(slog.New(slog.NewTextHandler(&logged, nil)))
			if err != nil {
				t.Fatalf("policy with alice's only key removed: %v", err)
			}
			if _, err := p.Authenticate("alice", key.PublicKey(), &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, time.Now()); err == nil {
				t.Error("the removed key is still accepted")
			}
			if !strings.Contains(logged.String(), "user has no keys") || !strings.Contains(logged.String(), "user=alice") {
				t.Errorf("no warning logged: %q", logged.String())
			}
		})
	}
}
