package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
)

// Config is the YAML configuration file. It is read and checked once, at
// start-up: a bad file fails there, with a message naming the field.
type Config struct {
	// Listen is the SSH listen address; ":2222" if empty.
	Listen string `yaml:"listen"`
	// HostKeyFile holds the SSH host key; created (ed25519, mode 0600) if
	// missing. Required.
	HostKeyFile string `yaml:"host_key_file"`
	// AuditLog is the audit log file, "-" for standard output. Required.
	AuditLog string `yaml:"audit_log"`
	// DebugListen, if set, serves Go's pprof and expvar (goroutines,
	// memory) on this address for profiling. Bind it to loopback: it is
	// not authenticated. Empty: off.
	DebugListen string        `yaml:"debug_listen"`
	Pools       []PoolConfig  `yaml:"pools"`
	Users       []UserConfig  `yaml:"users"`
	Groups      []GroupConfig `yaml:"groups"`
	Limits      LimitsConfig  `yaml:"limits"`
	// TrustedUserCAKeys is a file of CA public keys (OpenSSH
	// TrustedUserCAKeys format) whose user certificates log in users
	// named among their principals. Empty: certificates are refused.
	TrustedUserCAKeys string `yaml:"trusted_user_ca_keys"`
	// RevokedKeys is a file of public keys, CA keys and SHA256:
	// fingerprints that are refused. Empty: none.
	RevokedKeys string `yaml:"revoked_keys"`
	// XAPIKnownHosts is the state file of tls.trust_on_first_use. Empty:
	// xapi_known_hosts beside host_key_file.
	XAPIKnownHosts string `yaml:"xapi_known_hosts"`
	// Ciphers are the SSH ciphers offered to clients. Empty: x/crypto's
	// defaults (AES-GCM, chacha20-poly1305, AES-CTR). Read at start-up.
	Ciphers []string `yaml:"ciphers"`
}

// LimitsConfig is bastion.Limits in the file. Absent or zero values take
// bastion's safe defaults; a negative number or duration turns that limit
// off.
type LimitsConfig struct {
	HandshakeTimeout      Duration `yaml:"handshake_timeout"`
	MaxUnauthenticated    int      `yaml:"max_unauthenticated"`
	MaxUnauthPerSource    int      `yaml:"max_unauthenticated_per_source"`
	MaxChannelsPerConn    int      `yaml:"max_channels_per_connection"`
	AuthFailuresPerMinute int      `yaml:"auth_failures_per_minute"`
	AuthBlock             Duration `yaml:"auth_block"`
	MaxConnectionsPerUser int      `yaml:"max_connections_per_user"`
	MaxConsolesPerUser    int      `yaml:"max_consoles_per_user"`
	IdleTimeout           Duration `yaml:"idle_timeout"`
	MaxSessionDuration    Duration `yaml:"max_session_duration"`
}

func (l LimitsConfig) limits() bastion.Limits {
	return bastion.Limits{
		HandshakeTimeout:            time.Duration(l.HandshakeTimeout),
		MaxUnauthenticated:          l.MaxUnauthenticated,
		MaxUnauthenticatedPerSource: l.MaxUnauthPerSource,
		MaxChannelsPerConnection:    l.MaxChannelsPerConn,
		AuthFailuresPerMinute:       l.AuthFailuresPerMinute,
		AuthBlock:                   time.Duration(l.AuthBlock),
		MaxConnectionsPerUser:       l.MaxConnectionsPerUser,
		MaxConsolesPerUser:          l.MaxConsolesPerUser,
		IdleTimeout:                 time.Duration(l.IdleTimeout),
		MaxSessionDuration:          time.Duration(l.MaxSessionDuration),
	}
}

// Duration is a time.Duration written as in Go ("90s", "1h30m").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 90s, 30m, 12h)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// PoolConfig names one XAPI pool.
type PoolConfig struct {
	Name string `yaml:"name"`
	// URL is https://HOST[:PORT] of any host of the pool.
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	// PasswordFile or PasswordEnv (exactly one) holds the password.
	PasswordFile string    `yaml:"password_file"`
	PasswordEnv  string    `yaml:"password_env"`
	TLS          TLSConfig `yaml:"tls"`
}

// TLSConfig is how a pool's host certificates are checked; see xapi.Trust.
type TLSConfig struct {
	Fingerprints       []string `yaml:"fingerprints"`
	CAFile             string   `yaml:"ca_file"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	// TrustOnFirstUse records each host's certificate fingerprint in
	// xapi_known_hosts at first contact and refuses a different one later.
	TrustOnFirstUse bool `yaml:"trust_on_first_use"`
}

// UserConfig is one user who may log in.
type UserConfig struct {
	Name               string   `yaml:"name"`
	AuthorizedKeysFile string   `yaml:"authorized_keys_file"`
	Keys               []string `yaml:"keys"`
	// Allow and Deny are rules (see bastion.Rule); deny overrides allow,
	// and no allow rule allows nothing.
	Allow []RuleConfig `yaml:"allow"`
	Deny  []RuleConfig `yaml:"deny"`
}

// GroupConfig gives its members its rules.
type GroupConfig struct {
	Name    string       `yaml:"name"`
	Members []string     `yaml:"members"`
	Allow   []RuleConfig `yaml:"allow"`
	Deny    []RuleConfig `yaml:"deny"`
}

// RuleConfig is a rule: a pattern string, or a mapping
// {pattern: P, consoles: [rfb, vt100]}.
type RuleConfig struct {
	Pattern  string   `yaml:"pattern"`
	Consoles []string `yaml:"consoles"`
}

// UnmarshalYAML accepts the plain string form too.
func (r *RuleConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&r.Pattern)
	}
	type plain RuleConfig // without this method, so Decode does not recurse
	dec := (*plain)(r)
	if err := n.Decode(dec); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "pattern" && k != "consoles" {
			return fmt.Errorf("line %d: unknown key %q in a rule (want pattern, consoles)", n.Content[i].Line, k)
		}
	}
	if r.Pattern == "" {
		return fmt.Errorf("line %d: a rule needs a pattern", n.Line)
	}
	return nil
}

func toRules(rcs []RuleConfig) []bastion.Rule {
	rs := make([]bastion.Rule, len(rcs))
	for i, rc := range rcs {
		rs[i].Pattern = rc.Pattern
		for _, c := range rc.Consoles {
			rs[i].Consoles = append(rs[i].Consoles, xapi.Protocol(c))
		}
	}
	return rs
}

// unknownKeyRE matches yaml.v3's report of an unknown key.
var unknownKeyRE = regexp.MustCompile(`line (\d+): field (.+?) not found in type \S+`)

// parseConfig decodes and checks a configuration. name is the file name for
// messages.
func parseConfig(data []byte, name string) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty configuration", name)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, e := range te.Errors {
				if m := unknownKeyRE.FindStringSubmatch(e); m != nil {
					e = fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
				}
				msgs[i] = name + ": " + e
			}
			return nil, errors.New(strings.Join(msgs, "\n"))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: one YAML document expected; found more after \"---\"", name)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(data, path)
}

// check validates what can be checked without reading other files.
func (c *Config) check() error {
	if c.Listen == "" {
		c.Listen = ":2222"
	}
	if c.HostKeyFile == "" {
		return errors.New("host_key_file: required (created on first start if missing)")
	}
	if c.AuditLog == "" {
		return errors.New(`audit_log: required (a file, or "-" for standard output)`)
	}
	if len(c.Pools) == 0 {
		return errors.New("pools: at least one pool is required")
	}
	supported := gossh.SupportedAlgorithms().Ciphers
	for i, name := range c.Ciphers {
		if !slices.Contains(supported, name) {
			return fmt.Errorf("ciphers[%d]: %q is not one of %s", i, name, strings.Join(supported, ", "))
		}
	}
	pools := map[string]bool{}
	for i, p := range c.Pools {
		at := fmt.Sprintf("pools[%d]", i)
		switch {
		case p.Name == "":
			return fmt.Errorf("%s.name: required", at)
		case strings.ContainsAny(p.Name, "/: \t"):
			// A colon would make "POOL/glob" read as "uuid:", "tag:"
			// or "host:" patterns do: a rule that matches nothing.
			return fmt.Errorf("%s.name %q: no spaces, slashes or colons", at, p.Name)
		case pools[p.Name]:
			return fmt.Errorf("%s.name: pool %q listed twice", at, p.Name)
		case p.URL == "":
			return fmt.Errorf("pool %s: url: required", p.Name)
		case !strings.HasPrefix(p.URL, "https://") || len(p.URL) == len("https://"):
			return fmt.Errorf("pool %s: url %q: must be https://HOST[:PORT]", p.Name, p.URL)
		case p.Username == "":
			return fmt.Errorf("pool %s: username: required", p.Name)
		case (p.PasswordFile == "") == (p.PasswordEnv == ""):
			return fmt.Errorf("pool %s: set exactly one of password_file and password_env", p.Name)
		}
		if err := p.trust(c.knownHosts()).Validate(); err != nil {
			return fmt.Errorf("pool %s: %w", p.Name, err)
		}
		pools[p.Name] = true
	}
	users := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case u.Name == "":
			return fmt.Errorf("users[%d].name: required", i)
		case strings.ContainsFunc(u.Name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' || r == ':' }):
			return fmt.Errorf("users[%d].name %q: not a login name (no spaces, control characters, '@' or ':')", i, u.Name)
		case users[u.Name]:
			return fmt.Errorf("users[%d].name: user %q listed twice", i, u.Name)
		case u.AuthorizedKeysFile == "" && len(u.Keys) == 0 && c.TrustedUserCAKeys == "":
			return fmt.Errorf("user %s: no keys: set authorized_keys_file or keys (or trusted_user_ca_keys for certificates)", u.Name)
		}
		if err := checkRulePools("user "+u.Name, pools, u.Allow, u.Deny); err != nil {
			return err
		}
		users[u.Name] = true
	}
	for _, g := range c.Groups {
		if err := checkRulePools("group "+g.Name, pools, g.Allow, g.Deny); err != nil {
			return err
		}
	}
	return nil
}

// checkRulePools refuses a "POOL/..." rule naming no configured pool: a
// typo there would silently allow nothing (or deny nothing).
func checkRulePools(who string, pools map[string]bool, lists ...[]RuleConfig) error {
	for _, rs := range lists {
		for _, r := range rs {
			pool, _, ok := strings.Cut(r.Pattern, "/")
			if ok && !strings.Contains(pool, ":") && !strings.ContainsAny(pool, "*?[") && !pools[pool] {
				return fmt.Errorf("%s: rule %q: no pool named %q", who, r.Pattern, pool)
			}
		}
	}
	return nil
}

func (p PoolConfig) trust(knownHosts string) xapi.Trust {
	return xapi.Trust{
		Fingerprints: p.TLS.Fingerprints, CAFile: p.TLS.CAFile, InsecureSkipVerify: p.TLS.InsecureSkipVerify,
		TrustOnFirstUse: p.TLS.TrustOnFirstUse, KnownHostsFile: knownHosts,
	}
}

// knownHosts is the trust-on-first-use state file.
func (c *Config) knownHosts() string {
	if c.XAPIKnownHosts != "" {
		return c.XAPIKnownHosts
	}
	return filepath.Join(filepath.Dir(c.HostKeyFile), "xapi_known_hosts")
}

// password reads the pool's password from its file or environment variable.
func (p PoolConfig) password() (string, error) {
	if p.PasswordEnv != "" {
		pw, ok := os.LookupEnv(p.PasswordEnv)
		if !ok || pw == "" {
			return "", fmt.Errorf("pool %s: password_env: $%s is not set or empty", p.Name, p.PasswordEnv)
		}
		return pw, nil
	}
	b, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("pool %s: password_file: %w", p.Name, err)
	}
	// Only the file's final line break goes: editors add one.
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("pool %s: password_file %s is empty", p.Name, p.PasswordFile)
	}
	return pw, nil
}

// policy loads every user's keys and builds the access policy.
func (c *Config) policy(log *slog.Logger) (*bastion.Policy, error) {
	users := make([]bastion.User, 0, len(c.Users))
	for _, u := range c.Users {
		var lists [][]keys.AuthorizedKey
		if u.AuthorizedKeysFile != "" {
			ks, err := keys.LoadAuthorizedKeysFile(u.AuthorizedKeysFile)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// As sshd: no file, no keys. Deleting a user's key file
				// is a way to revoke their keys, and a reload refused
				// for it would keep them working.
				log.Warn("authorized_keys_file does not exist", "user", u.Name, "authorized_keys_file", u.AuthorizedKeysFile)
			case err != nil:
				return nil, fmt.Errorf("user %s: %w", u.Name, err)
			}
			lists = append(lists, ks)
		}
		for i, line := range u.Keys {
			ks, err := keys.ParseAuthorizedKeys([]byte(line), fmt.Sprintf("user %s keys[%d]", u.Name, i))
			if err != nil {
				return nil, err
			}
			lists = append(lists, ks)
		}
		n := 0
		for _, ks := range lists {
			n += len(ks)
		}
		if n == 0 && len(u.Keys)+len(u.AuthorizedKeysFile) > 0 {
			// Not an error: emptying a user's key file is how their last
			// key is revoked, and a reload that refused the file would
			// keep that key working.
			log.Warn("user has no keys: only a certificate from trusted_user_ca_keys, if any, logs them in", "user", u.Name, "authorized_keys_file", u.AuthorizedKeysFile)
		}
		users = append(users, bastion.User{Name: u.Name, Keys: keys.NewKeySet(lists...), Allow: toRules(u.Allow), Deny: toRules(u.Deny)})
	}
	groups := make([]bastion.Group, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = bastion.Group{Name: g.Name, Members: g.Members, Allow: toRules(g.Allow), Deny: toRules(g.Deny)}
	}
	var opts []bastion.PolicyOption
	if c.TrustedUserCAKeys != "" {
		cas, err := keys.LoadCAKeys(c.TrustedUserCAKeys)
		if err != nil {
			return nil, fmt.Errorf("trusted_user_ca_keys: %w", err)
		}
		if len(cas) == 0 {
			return nil, fmt.Errorf("trusted_user_ca_keys: no key in %s", c.TrustedUserCAKeys)
		}
		opts = append(opts, bastion.WithUserCAs(keys.NewCASet(cas...)))
	}
	if c.RevokedKeys != "" {
		r, err := keys.LoadRevocationList(c.RevokedKeys)
		if err != nil {
			return nil, fmt.Errorf("revoked_keys: %w", err)
		}
		opts = append(opts, bastion.WithRevoked(r))
	}
	return bastion.NewPolicy(users, groups, opts...)
}
