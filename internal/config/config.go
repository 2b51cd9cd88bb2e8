// Package config reads passerelle's configuration from PASSERELLE_* environment variables with
// go-envconfig. Any variable can also be read from a file named by <NAME>_FILE (for secrets mounted
// by Docker or Kubernetes). Fields tagged secret:"true" are masked wherever the config is printed.
package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/passerelle/passerelle/internal/bytesize"
	"github.com/passerelle/passerelle/internal/diskguard"
)

// Prefix starts every variable name.
const Prefix = "PASSERELLE_"

// Config is everything the daemon reads at start. The desc tags feed check-config and the README table.
type Config struct {
	HTTPAddr        string        `env:"HTTP_ADDR, default=:8080" desc:"listen address of the partner webhooks"`
	AdminAddr       string        `env:"ADMIN_ADDR, default=127.0.0.1:9090" desc:"listen address of /metrics, /healthz, /readyz and the admin API (dlq)"`
	AdminToken      string        `env:"ADMIN_TOKEN" secret:"true" desc:"when set, the admin API (/admin/…) requires Authorization: Bearer <token>; the CLI sends it"`
	DataDir         string        `env:"DATA_DIR, default=./data" desc:"embedded broker files and the SQLite store"`
	StoreDSN        string        `env:"STORE_DSN" secret:"true" desc:"state store: empty for SQLite under the data dir, or postgres://…"`
	LogFormat       string        `env:"LOG_FORMAT, default=auto" desc:"json, text, or auto (text on a terminal, JSON otherwise)"`
	LogLevel        string        `env:"LOG_LEVEL, default=info" desc:"debug, info, warn or error"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=30s" desc:"longest graceful shutdown on SIGTERM/SIGINT"`
	RedeliveryMin   time.Duration `env:"REDELIVERY_MIN, default=1s" desc:"first wait before a failed message is redelivered; doubles on each failure"`
	RedeliveryMax   time.Duration `env:"REDELIVERY_MAX, default=5m" desc:"longest wait between two redeliveries of a failed message"`
	AckWait         time.Duration `env:"ACK_WAIT, default=2m" desc:"how long the broker waits for a stage to acknowledge a message before redelivering it (messages in flight when the process died come back after this); a stage run times out at 3/4 of it, 90s at most"`
	StageYield      time.Duration `env:"STAGE_YIELD, default=30s" desc:"while 8 or more webhook requests are being stored at once (and for 100ms after), the stages hold their next message, for this long at most per burst, so partners get their answers first and deliveries catch up after the burst; 0 turns it off; lowered to PASSERELLE_ACK_WAIT/4 if above"`

	NATS NATS `env:", prefix=NATS_"`

	MinFreeDisk     string `env:"MIN_FREE_DISK" desc:"free space to keep in the data directory: a size (500MB, 64MiB) or a share (5%); empty is the smaller of 5% and 500MB. Below it /readyz answers 503, webhooks answer 503 without taking the record and stages pause, until space returns"`
	MemoryLimit     string `env:"MEMORY_LIMIT, default=150MiB" desc:"soft limit of the Go runtime's memory (as GOMEMLIMIT, which wins when set): near it the GC runs sooner and frees the embedded broker's message-block caches, so long bursts and large replays do not grow the process far past it; a size (150MiB, 1GB) or off. It is not a cap: live data above it is kept"`
	AllowUnknownEnv bool   `env:"ALLOW_UNKNOWN_ENV, default=false" desc:"accept PASSERELLE_* variables the daemon does not know; by default each is a start-up error naming the nearest known one"`

	// parts are the modules' own sections, as loaded with the core.
	parts []Part
	// sources says where each set variable came from: "environment" or "file <path>".
	sources map[string]string
}

// Section is one module's part of the configuration: a pointer to a struct whose env tags name
// variables after PASSERELLE_ (nested structs may add a prefix). It checks the values that parse
// but make no sense, naming each variable in its errors.
type Section interface {
	Validate() error
}

// Part is a module's section under the module's name.
type Part struct {
	Name    string
	Section Section
}

// Get returns the section a module loaded under name. It panics when there is none: the module
// list and the loaded configuration disagree, which is a wiring bug.
func Get[T Section](c Config, name string) T {
	for _, p := range c.parts {
		if p.Name == name {
			if s, ok := p.Section.(T); ok {
				return s
			}
		}
	}
	panic(fmt.Sprintf("config: no section %q of type %T loaded", name, *new(T)))
}

// NATS configures the message transport.
type NATS struct {
	URL             string        `env:"URL" secret:"true" desc:"external JetStream server; empty runs the embedded one"`
	Listen          string        `env:"LISTEN" desc:"embedded server: host:port to open for the nats CLI; empty opens no port"`
	Stream          string        `env:"STREAM, default=PASSERELLE" desc:"JetStream stream name"`
	SubjectPrefix   string        `env:"SUBJECT_PREFIX, default=passerelle" desc:"subject prefix of every topic"`
	SyncInterval    time.Duration `env:"SYNC_INTERVAL, default=1s" desc:"embedded server fsync interval: a power loss may lose this much (a crash of the process loses nothing)"`
	MaxAge          time.Duration `env:"MAX_AGE, default=168h" desc:"how long messages stay in the stream for replay"`
	MaxBytes        int64         `env:"MAX_BYTES, default=1073741824" desc:"stream size limit in bytes"`
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW, default=2m" desc:"broker-side duplicate detection window on message ids (a redelivered stage input re-publishes the same ids)"`
	Replicas        int           `env:"REPLICAS, default=1" desc:"servers of an external JetStream cluster that keep the stream and its consumers (1 to 5; 3 survives the loss of one node); above 1 needs PASSERELLE_NATS_URL"`
}

// LoadFrom reads the core configuration and each module's section from environ (KEY=value
// lines), resolving <NAME>_FILE. Each part's Section must be a pointer to a zero struct: it is
// filled, validated, and kept in the Config for Get.
func LoadFrom(ctx context.Context, environ []string, parts ...Part) (Config, error) {
	vars := Vars(parts...)
	if err := checkUnknown(environ, vars); err != nil {
		return Config{}, err
	}
	env, sources, err := resolveFiles(environ)
	if err != nil {
		return Config{}, err
	}
	// Parse each set variable on its own first, so an error names the variable, not a Go field.
	for _, v := range vars {
		if raw, ok := env[v.Name]; ok {
			if err := v.check(ctx, raw); err != nil {
				return Config{}, err
			}
		}
	}
	lookup := envconfig.PrefixLookuper(Prefix, envconfig.MapLookuper(env))
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: lookup}); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	errs := []error{c.Validate()}
	for _, p := range parts {
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: p.Section, Lookuper: lookup}); err != nil {
			return Config{}, fmt.Errorf("configuration of %s: %w", p.Name, err)
		}
		errs = append(errs, p.Section.Validate())
	}
	if c.StoreDSN != "" && !strings.HasPrefix(c.StoreDSN, "postgres://") && !strings.HasPrefix(c.StoreDSN, "postgresql://") {
		scheme, _, _ := strings.Cut(c.StoreDSN, "://")
		if scheme == c.StoreDSN {
			scheme = "(no scheme)"
		}
		errs = append(errs, fmt.Errorf("%sSTORE_DSN: scheme %s is not supported: want postgres://… (or leave it empty for SQLite under PASSERELLE_DATA_DIR)", Prefix, scheme))
	}
	c.parts, c.sources = parts, sources
	return c, errors.Join(errs...)
}

// checkUnknown refuses PASSERELLE_* variables that nothing reads (a typo would be silently
// ignored), naming the nearest known one, unless PASSERELLE_ALLOW_UNKNOWN_ENV is true.
// PASSERELLE_TEST_* belong to the test suite.
func checkUnknown(environ []string, vars []Var) error {
	known := make(map[string]bool, 2*len(vars))
	for _, v := range vars {
		known[v.Name], known[v.Name+"_FILE"] = true, true
	}
	var unknown []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if k == Prefix+"ALLOW_UNKNOWN_ENV" && (v == "true" || v == "1") {
			return nil
		}
		if strings.HasPrefix(k, Prefix) && !known[k] && !strings.HasPrefix(k, Prefix+"TEST_") {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	var errs []error
	for _, k := range slices.Compact(unknown) {
		errs = append(errs, fmt.Errorf("%s: unknown variable, did you mean %s? (PASSERELLE_ALLOW_UNKNOWN_ENV=true accepts unknown variables)", k, nearest(k, vars)))
	}
	return errors.Join(errs...)
}

// nearest is the known variable closest to name by edit distance.
func nearest(name string, vars []Var) string {
	best, bestD := "", -1
	for _, v := range vars {
		if d := editDistance(name, v.Name); bestD < 0 || d < bestD {
			best, bestD = v.Name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func resolveFiles(environ []string) (map[string]string, map[string]string, error) {
	env := make(map[string]string, len(environ))
	sources := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		if strings.HasPrefix(k, Prefix) {
			sources[k] = "environment"
		}
	}
	var files []string
	for k := range env {
		if strings.HasPrefix(k, Prefix) && strings.HasSuffix(k, "_FILE") {
			files = append(files, k)
		}
	}
	for _, k := range files {
		name, path := strings.TrimSuffix(k, "_FILE"), env[k]
		if _, both := env[name]; both {
			return nil, nil, fmt.Errorf("%s and %s are both set: use one", name, k)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", k, err)
		}
		env[name] = strings.TrimRight(string(b), "\r\n")
		sources[name] = "file " + path
	}
	return env, sources, nil
}

// Errors collects a section's validation errors, each naming its variable.
type Errors []error

// Add records that PASSERELLE_<name> is wrong.
func (e *Errors) Add(name, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
}

// Err is nil when nothing was added.
func (e Errors) Err() error { return errors.Join(e...) }

// HTTPURL checks that PASSERELLE_<name> is an absolute http(s) URL; the error quotes only its
// scheme and host, since a URL's path or query often holds a secret.
func (e *Errors) HTTPURL(name, raw string) {
	if p, err := url.Parse(raw); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		e.Add(name, "%q is not an http(s) URL", RedactURL(raw))
	}
}

// Validate checks core values that parse but make no sense.
func (c Config) Validate() error {
	var errs Errors
	bad := errs.Add
	for name, addr := range map[string]string{"HTTP_ADDR": c.HTTPAddr, "ADMIN_ADDR": c.AdminAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(name, "%q is not host:port", addr)
		}
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LOG_FORMAT", "%q: want json, text or auto", c.LogFormat)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive")
	}
	if c.RedeliveryMin <= 0 || c.RedeliveryMax < c.RedeliveryMin {
		bad("REDELIVERY_MAX", "must be at least PASSERELLE_REDELIVERY_MIN, both positive")
	}
	if c.AckWait <= 0 {
		bad("ACK_WAIT", "must be positive")
	}
	if _, err := diskguard.ParseFloor(c.MinFreeDisk); err != nil {
		bad("MIN_FREE_DISK", "%v", err)
	}
	if _, err := ParseMemoryLimit(c.MemoryLimit); err != nil {
		bad("MEMORY_LIMIT", "%v", err)
	}
	if c.StageYield < 0 {
		bad("STAGE_YIELD", "must not be negative")
	}
	switch {
	case c.NATS.Replicas < 1 || c.NATS.Replicas > 5:
		bad("NATS_REPLICAS", "%d: want 1 to 5 (JetStream's limits)", c.NATS.Replicas)
	case c.NATS.Replicas > 1 && c.NATS.URL == "":
		bad("NATS_REPLICAS", "%d needs an external JetStream cluster in PASSERELLE_NATS_URL: the embedded server is one node", c.NATS.Replicas)
	}
	return errs.Err()
}

// Var describes one environment variable.
type Var struct {
	Name    string
	Default string
	Desc    string
	Secret  bool
	typ     reflect.Type
	tag     string
	part    int // index of the module's section, -1 for the core
	path    []int
}

func (v Var) check(ctx context.Context, raw string) error {
	t := reflect.StructOf([]reflect.StructField{{Name: "V", Type: v.typ, Tag: reflect.StructTag(`env:"V"`)}})
	p := reflect.New(t)
	err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: p.Interface(), Lookuper: envconfig.MapLookuper(map[string]string{"V": raw})})
	if err != nil {
		shown := raw
		if v.Secret {
			shown = "(secret)"
		}
		_, cause, _ := strings.Cut(err.Error(), ": ")
		return fmt.Errorf("%s: invalid value %q: %s", v.Name, shown, cause)
	}
	return nil
}

// Vars lists every variable with its default, in declaration order: the core's, then each part's.
func Vars(parts ...Part) []Var {
	var out []Var
	part := -1
	var walk func(t reflect.Type, prefix string, path []int)
	walk = func(t reflect.Type, prefix string, path []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, ok := f.Tag.Lookup("env")
			if !ok || !f.IsExported() {
				continue
			}
			key, opts, _ := strings.Cut(tag, ",")
			p := append(append([]int(nil), path...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				_, sub, _ := strings.Cut(opts, "prefix=")
				walk(f.Type, prefix+strings.TrimSpace(sub), p)
				continue
			}
			def := ""
			if _, d, ok := strings.Cut(opts, "default="); ok {
				def = d
			}
			out = append(out, Var{Name: Prefix + prefix + key, Default: def, Desc: f.Tag.Get("desc"),
				Secret: f.Tag.Get("secret") == "true", typ: f.Type, tag: tag, part: part, path: p})
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	for i, p := range parts {
		part = i
		walk(reflect.TypeOf(p.Section).Elem(), "", nil)
	}
	return out
}

// Explain lists every variable with its value (secrets masked) and where the value came from:
// "default", "environment" or "file <path>".
func (c Config) Explain() [][3]string {
	eff := c.Effective()
	out := make([][3]string, len(eff))
	for i, kv := range eff {
		src, ok := c.sources[kv[0]]
		if !ok {
			src = "default"
		}
		out[i] = [3]string{kv[0], kv[1], src}
	}
	return out
}

// Effective lists every variable with its value, secrets masked, for check-config.
func (c Config) Effective() [][2]string {
	var out [][2]string
	for _, v := range Vars(c.parts...) {
		rv := reflect.ValueOf(c)
		if v.part >= 0 {
			rv = reflect.ValueOf(c.parts[v.part].Section).Elem()
		}
		f := rv.FieldByIndex(v.path)
		val := fmt.Sprint(f.Interface())
		if s, ok := f.Interface().([]string); ok {
			val = strings.Join(s, ",")
		}
		if v.Secret && !f.IsZero() {
			val = "****"
		}
		out = append(out, [2]string{v.Name, val})
	}
	return out
}

// MarkdownTable renders Vars as the README's configuration table.
func MarkdownTable(parts ...Part) string {
	var b strings.Builder
	b.WriteString("| variable | default | description |\n|---|---|---|\n")
	for _, v := range Vars(parts...) {
		def := v.Default
		if def != "" {
			def = "`" + def + "`"
		}
		desc := v.Desc
		if v.Secret {
			desc += " (secret; also `" + v.Name + "_FILE`)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, desc)
	}
	return b.String()
}

// RedactURL keeps a URL's scheme and host, for messages: its path or query may hold a secret.
func RedactURL(s string) string {
	p, err := url.Parse(s)
	if err != nil || p.Host == "" {
		return "(unparseable)"
	}
	return p.Scheme + "://" + p.Host + "/…"
}

// StoreLocation is the configured store: PASSERELLE_STORE_DSN, or SQLite under the data dir.
func (c Config) StoreLocation() string {
	if c.StoreDSN != "" {
		return c.StoreDSN
	}
	return filepath.Join(c.DataDir, "passerelle.db")
}

// minMemoryLimit keeps a typo ("150KiB") from turning the GC into the daemon's main work.
const minMemoryLimit = 32 << 20

// ParseMemoryLimit reads PASSERELLE_MEMORY_LIMIT: a size, or "off" (0: no limit).
func ParseMemoryLimit(s string) (uint64, error) {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		return 0, nil
	}
	v, err := bytesize.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%w, or off", err)
	}
	if v < minMemoryLimit {
		return 0, fmt.Errorf("%q is below 32MiB: the GC would run all the time; want a size such as 150MiB, or off", s)
	}
	return v, nil
}
