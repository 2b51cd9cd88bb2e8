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
	"reflect"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sethvargo/go-envconfig"
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
	DedupeWindow    time.Duration `env:"DEDUPE_WINDOW, default=24h" desc:"a lead with the same contact, formation and id_client inside this window is a duplicate"`
	RedeliveryMin   time.Duration `env:"REDELIVERY_MIN, default=1s" desc:"first wait before a failed message is redelivered; doubles on each failure"`
	RedeliveryMax   time.Duration `env:"REDELIVERY_MAX, default=5m" desc:"longest wait between two redeliveries of a failed message"`
	AckWait         time.Duration `env:"ACK_WAIT, default=2m" desc:"how long the broker waits for a stage to acknowledge a message before redelivering it (messages in flight when the process died come back after this); a stage run times out at 3/4 of it, 90s at most"`
	StageYield      time.Duration `env:"STAGE_YIELD, default=500ms" desc:"while 8 or more webhook requests are being stored at once (and for 100ms after), each stage waits up to this long before its next message, so partners get their answers first and deliveries catch up after the burst; 0 turns it off; lowered to PASSERELLE_ACK_WAIT/128 if above"`

	NATS         NATS         `env:", prefix=NATS_"`
	IciFormation IciFormation `env:", prefix=ICIFORMATION_"`
	CRM          CRM          `env:", prefix=CRM_"`
	ShopApp      ShopApp      `env:", prefix=SHOPAPP_"`
	SFTP         SFTP         `env:", prefix=SFTP_"`
	Billing      Billing      `env:", prefix=BILLING_"`
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
}

// IciFormation configures the lead webhook source.
type IciFormation struct {
	Token string `env:"TOKEN" secret:"true" desc:"token Ici Formation sends; the webhook is off when empty"`
	Auth  string `env:"AUTH, default=bearer" desc:"how the token is sent: bearer, api-key, x-token or token"`
}

// CRM configures the CRM webhook sink.
type CRM struct {
	URLs        []string      `env:"URL" secret:"true" desc:"one or more endpoints, comma separated; the sink is off when empty"`
	Secret      string        `env:"SECRET" secret:"true" desc:"Standard Webhooks signing secret (whsec_…)"`
	Format      string        `env:"FORMAT, default=generic" desc:"generic (event envelope) or hubspot (contact properties)"`
	Timeout     time.Duration `env:"TIMEOUT, default=10s" desc:"per-request timeout"`
	MaxAttempts int           `env:"MAX_ATTEMPTS, default=12" desc:"HTTP attempts per endpoint before the event is dead-lettered"`
	MaxAge      time.Duration `env:"MAX_AGE, default=24h" desc:"age after which a failing event is dead-lettered"`
}

// ShopApp configures the Shop Application (Cegid) poller and provisioning client.
type ShopApp struct {
	URL          string        `env:"URL" desc:"API base URL; the poller is off when empty"`
	ClientID     string        `env:"CLIENT_ID" desc:"client_id for GET /token"`
	ClientSecret string        `env:"CLIENT_SECRET" secret:"true" desc:"client_secret for GET /token"`
	Rate         float64       `env:"RATE, default=5" desc:"client-side limit, requests per second"`
	PollInterval time.Duration `env:"POLL_INTERVAL, default=5m" desc:"time between two polls"`
	Concurrency  int           `env:"CONCURRENCY, default=4" desc:"interfaces fetched in parallel during a poll"`
}

// SFTP configures where billing files are uploaded.
type SFTP struct {
	Addr       string `env:"ADDR" desc:"host:port of the partner's SFTP server; uploads are off when empty"`
	User       string `env:"USER" desc:"SSH user"`
	Password   string `env:"PASSWORD" secret:"true" desc:"password (or use KEY_FILE)"`
	KeyFile    string `env:"KEY_FILE" desc:"private key file for key auth"`
	KnownHosts string `env:"KNOWN_HOSTS" desc:"known_hosts file holding the server's host key; unknown or changed keys are refused"`
	Dir        string `env:"DIR, default=/depot/" desc:"remote folder"`
	// Many writes in flight help on a link with latency and cost time on a fast one (see make bench).
	ConcurrentWrites bool `env:"CONCURRENT_WRITES, default=false" desc:"keep many SFTP write requests in flight: faster over links with latency, slower on a local network"`
}

// Billing configures the monthly file of clients to bill.
type Billing struct {
	Schedule     string `env:"SCHEDULE, default=0 6 1 * *" desc:"cron schedule (Europe/Paris) of the run for the previous month"`
	BOM          bool   `env:"BOM, default=false" desc:"write a UTF-8 BOM for Excel"`
	DecimalComma bool   `env:"DECIMAL_COMMA, default=false" desc:"write amounts with a decimal comma"`
}

// Load reads the configuration from the process environment.
func Load(ctx context.Context) (Config, error) {
	return LoadFrom(ctx, os.Environ())
}

// LoadFrom reads the configuration from environ (KEY=value lines), resolving <NAME>_FILE.
func LoadFrom(ctx context.Context, environ []string) (Config, error) {
	env, err := resolveFiles(environ)
	if err != nil {
		return Config{}, err
	}
	// Parse each set variable on its own first, so an error names the variable, not a Go field.
	for _, v := range Vars() {
		if raw, ok := env[v.Name]; ok {
			if err := v.check(ctx, raw); err != nil {
				return Config{}, err
			}
		}
	}
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   &c,
		Lookuper: envconfig.PrefixLookuper(Prefix, envconfig.MapLookuper(env)),
	}); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, c.Validate()
}

func resolveFiles(environ []string) (map[string]string, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, path := range env {
		name, ok := strings.CutSuffix(k, "_FILE")
		if !ok || !strings.HasPrefix(k, Prefix) {
			continue
		}
		if _, both := env[name]; both {
			return nil, fmt.Errorf("%s and %s are both set: use one", name, k)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		env[name] = strings.TrimRight(string(b), "\r\n")
	}
	return env, nil
}

// Validate checks values that parse but make no sense.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", Prefix, name, fmt.Sprintf(format, args...)))
	}
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
	if c.StageYield < 0 {
		bad("STAGE_YIELD", "must not be negative")
	}
	if c.DedupeWindow < 0 {
		bad("DEDUPE_WINDOW", "must not be negative")
	}
	switch c.IciFormation.Auth {
	case "bearer", "api-key", "x-token", "token":
	default:
		bad("ICIFORMATION_AUTH", "%q: want bearer, api-key, x-token or token", c.IciFormation.Auth)
	}
	for _, u := range c.CRM.URLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("CRM_URL", "%q is not an http(s) URL", redactURL(u))
		}
	}
	if len(c.CRM.URLs) > 0 && c.CRM.Secret == "" {
		bad("CRM_SECRET", "required when PASSERELLE_CRM_URL is set")
	}
	if c.CRM.Secret != "" && !strings.HasPrefix(c.CRM.Secret, "whsec_") {
		bad("CRM_SECRET", "must start with whsec_")
	}
	switch c.CRM.Format {
	case "generic", "hubspot":
	default:
		bad("CRM_FORMAT", "%q: want generic or hubspot", c.CRM.Format)
	}
	if c.CRM.MaxAttempts < 1 {
		bad("CRM_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.CRM.Timeout <= 0 {
		bad("CRM_TIMEOUT", "must be positive")
	}
	if c.ShopApp.URL != "" {
		if p, err := url.Parse(c.ShopApp.URL); err != nil || p.Host == "" {
			bad("SHOPAPP_URL", "%q is not a URL", c.ShopApp.URL)
		}
		if c.ShopApp.ClientID == "" || c.ShopApp.ClientSecret == "" {
			bad("SHOPAPP_CLIENT_ID", "client id and secret are required when PASSERELLE_SHOPAPP_URL is set")
		}
	}
	if c.ShopApp.Rate <= 0 {
		bad("SHOPAPP_RATE", "must be positive")
	}
	if c.ShopApp.PollInterval <= 0 {
		bad("SHOPAPP_POLL_INTERVAL", "must be positive")
	}
	if c.ShopApp.Concurrency < 1 {
		bad("SHOPAPP_CONCURRENCY", "must be at least 1")
	}
	if _, err := cron.ParseStandard(strings.TrimSpace(c.Billing.Schedule)); err != nil {
		bad("BILLING_SCHEDULE", "%q is not a cron schedule (minute hour day month weekday): %v", c.Billing.Schedule, err)
	}
	if c.SFTP.Addr != "" {
		if c.SFTP.KnownHosts == "" {
			bad("SFTP_KNOWN_HOSTS", "required when PASSERELLE_SFTP_ADDR is set: host keys are always checked")
		}
		if c.SFTP.Password == "" && c.SFTP.KeyFile == "" {
			bad("SFTP_PASSWORD", "set a password or PASSERELLE_SFTP_KEY_FILE")
		}
	}
	return errors.Join(errs...)
}

// Connectors says which connectors run and why, for check-config and the startup log.
func (c Config) Connectors() []Connector {
	on := func(name string, ok bool, why string) Connector { return Connector{Name: name, On: ok, Why: why} }
	return []Connector{
		on("iciformation", c.IciFormation.Token != "", pick(c.IciFormation.Token != "", "POST /webhooks/iciformation, auth "+c.IciFormation.Auth, "PASSERELLE_ICIFORMATION_TOKEN is empty")),
		on("crm", len(c.CRM.URLs) > 0, pick(len(c.CRM.URLs) > 0, fmt.Sprintf("%d endpoint(s), format %s", len(c.CRM.URLs), c.CRM.Format), "PASSERELLE_CRM_URL is empty")),
		on("shopapp", c.ShopApp.URL != "", pick(c.ShopApp.URL != "", "polling "+c.ShopApp.URL+" every "+c.ShopApp.PollInterval.String(), "PASSERELLE_SHOPAPP_URL is empty")),
		on("sftp", c.SFTP.Addr != "", pick(c.SFTP.Addr != "", "billing files to "+c.SFTP.Addr+c.SFTP.Dir, "PASSERELLE_SFTP_ADDR is empty")),
		on("nats", true, pick(c.NATS.URL == "", "embedded server under "+c.DataDir, "external server")),
	}
}

// Connector is one line of check-config.
type Connector struct {
	Name string
	On   bool
	Why  string
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// Var describes one environment variable.
type Var struct {
	Name    string
	Default string
	Desc    string
	Secret  bool
	typ     reflect.Type
	tag     string
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

// Vars lists every variable with its default, in declaration order.
func Vars() []Var {
	var out []Var
	var walk func(t reflect.Type, prefix string, path []int)
	walk = func(t reflect.Type, prefix string, path []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("env")
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
				Secret: f.Tag.Get("secret") == "true", typ: f.Type, tag: tag, path: p})
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	return out
}

// Effective lists every variable with its value, secrets masked, for check-config.
func (c Config) Effective() [][2]string {
	rv := reflect.ValueOf(c)
	var out [][2]string
	for _, v := range Vars() {
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
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| variable | default | description |\n|---|---|---|\n")
	for _, v := range Vars() {
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

func redactURL(s string) string {
	p, err := url.Parse(s)
	if err != nil || p.Host == "" {
		return "(unparseable)"
	}
	return p.Scheme + "://" + p.Host + "/…"
}
