package config

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// testSection is a module's section, as the modules declare theirs.
type testSection struct {
	URL     string        `env:"TEST_URL" desc:"a URL"`
	Token   string        `env:"TEST_TOKEN" secret:"true" desc:"a secret"`
	Every   time.Duration `env:"TEST_EVERY, default=5m" desc:"a period"`
	checked bool
}

func (s *testSection) Validate() error {
	s.checked = true
	var errs Errors
	if s.Every <= 0 {
		errs.Add("TEST_EVERY", "must be positive")
	}
	if s.URL != "" {
		errs.HTTPURL("TEST_URL", s.URL)
	}
	return errs.Err()
}

func TestSectionsAreLoadedValidatedAndListed(t *testing.T) {
	part := Part{Name: "test", Section: &testSection{}}
	c, err := LoadFrom(context.Background(), []string{"PASSERELLE_TEST_TOKEN=s3cret", "PASSERELLE_TEST_EVERY=1m"}, part)
	if err != nil {
		t.Fatal(err)
	}
	s := Get[*testSection](c, "test")
	if !s.checked || s.Token != "s3cret" || s.Every != time.Minute {
		t.Fatalf("section = %+v, want loaded and validated", s)
	}
	var names []string
	for _, v := range Vars(part) {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "PASSERELLE_HTTP_ADDR") || !strings.HasSuffix(got, "PASSERELLE_TEST_URL PASSERELLE_TEST_TOKEN PASSERELLE_TEST_EVERY") {
		t.Errorf("Vars = %s, want the core's then the section's", got)
	}
	for _, kv := range c.Effective() {
		if kv[0] == "PASSERELLE_TEST_TOKEN" && kv[1] != "****" {
			t.Errorf("Effective shows the secret: %s", kv[1])
		}
	}
	if !strings.Contains(MarkdownTable(part), "| `PASSERELLE_TEST_EVERY` | `5m` | a period |") {
		t.Error("MarkdownTable lacks the section's variable")
	}
}

func TestSectionErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"PASSERELLE_TEST_EVERY=soon", "PASSERELLE_TEST_EVERY"},
		{"PASSERELLE_TEST_EVERY=0s", "PASSERELLE_TEST_EVERY: must be positive"},
		{"PASSERELLE_TEST_URL=ftp://host/secret-path", `PASSERELLE_TEST_URL: "ftp://host/…"`},
		{"PASSERELLE_SHUTDOWN_TIMEOUT=0s", "PASSERELLE_SHUTDOWN_TIMEOUT"},
	} {
		_, err := LoadFrom(context.Background(), []string{tc.env}, Part{Name: "test", Section: &testSection{}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-path") {
			t.Errorf("%s: the error quotes the URL's path: %v", tc.env, err)
		}
	}
}

func TestGetPanicsOnAnUnloadedSection(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Get of a section never loaded did not panic")
		}
	}()
	Get[*testSection](Config{}, "test")
}

func TestErrorsJoin(t *testing.T) {
	var errs Errors
	if errs.Err() != nil {
		t.Fatal("no error added, Err() != nil")
	}
	errs.Add("X", "bad %d", 1)
	if err := errs.Err(); err == nil || !errors.Is(err, errs[0]) || err.Error() != "PASSERELLE_X: bad 1" {
		t.Errorf("Err() = %v", err)
	}
}

func TestUnknownVariablesAreRefused(t *testing.T) {
	part := Part{Name: "test", Section: &testSection{}}
	_, err := LoadFrom(context.Background(), []string{"PASSERELLE_HTTP_PORT=8081", "PASSERELLE_TEST_EVRY=1m", "OTHER=x"}, part)
	if err == nil {
		t.Fatal("unknown variables accepted")
	}
	for _, want := range []string{
		"PASSERELLE_HTTP_PORT: unknown variable, did you mean PASSERELLE_HTTP_ADDR?",
		"PASSERELLE_ALLOW_UNKNOWN_ENV=true",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// PASSERELLE_TEST_* are the test suite's; the escape hatch accepts anything.
	for _, env := range [][]string{
		{"PASSERELLE_TEST_NATS_URL=nats://x"},
		{"PASSERELLE_HTTP_PORT=8081", "PASSERELLE_ALLOW_UNKNOWN_ENV=true"},
		{"PASSERELLE_LOG_LEVEL=warn"},
	} {
		if _, err := LoadFrom(context.Background(), env); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

func TestStoreDSNScheme(t *testing.T) {
	for dsn, ok := range map[string]bool{
		"":                             true,
		"postgres://u@127.0.0.1/db":    true,
		"postgresql://u@127.0.0.1/db":  true,
		"mysql://u@127.0.0.1/db":       false,
		"host=127.0.0.1 user=postgres": false,
		"/var/lib/passerelle.db":       false,
	} {
		_, err := LoadFrom(context.Background(), []string{"PASSERELLE_STORE_DSN=" + dsn})
		if (err == nil) != ok {
			t.Errorf("STORE_DSN %q: error %v, want ok=%v", dsn, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "u@127") {
			t.Errorf("the error quotes the DSN: %v", err)
		}
	}
}

func TestExplainSaysWhereEachValueComesFrom(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/token"
	if err := os.WriteFile(path, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFrom(context.Background(), []string{"PASSERELLE_LOG_LEVEL=debug", "PASSERELLE_ADMIN_TOKEN_FILE=" + path})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][3]string{}
	for _, l := range c.Explain() {
		got[l[0]] = l
	}
	for name, want := range map[string][3]string{
		"PASSERELLE_LOG_LEVEL":   {"PASSERELLE_LOG_LEVEL", "debug", "environment"},
		"PASSERELLE_ADMIN_TOKEN": {"PASSERELLE_ADMIN_TOKEN", "****", "file " + path},
		"PASSERELLE_HTTP_ADDR":   {"PASSERELLE_HTTP_ADDR", ":8080", "default"},
	} {
		if got[name] != want {
			t.Errorf("%s: %v, want %v", name, got[name], want)
		}
	}
}

func TestNATSReplicas(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want int
		err  string
	}{
		{env: nil, want: 1},
		{env: []string{"PASSERELLE_NATS_URL=nats://a:4222,nats://b:4222,nats://c:4222", "PASSERELLE_NATS_REPLICAS=3"}, want: 3},
		{env: []string{"PASSERELLE_NATS_REPLICAS=3"}, err: "PASSERELLE_NATS_REPLICAS: 3 needs an external JetStream cluster in PASSERELLE_NATS_URL"},
		{env: []string{"PASSERELLE_NATS_URL=nats://a:4222", "PASSERELLE_NATS_REPLICAS=0"}, err: "PASSERELLE_NATS_REPLICAS: 0: want 1 to 5"},
		{env: []string{"PASSERELLE_NATS_URL=nats://a:4222", "PASSERELLE_NATS_REPLICAS=7"}, err: "PASSERELLE_NATS_REPLICAS: 7: want 1 to 5"},
		{env: []string{"PASSERELLE_NATS_REPLICAS=three"}, err: "PASSERELLE_NATS_REPLICAS: invalid value"},
	} {
		c, err := LoadFrom(context.Background(), tc.env)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: error %v, want one containing %q", tc.env, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.err == "" && c.NATS.Replicas != tc.want:
			t.Errorf("%v: %d replicas, want %d", tc.env, c.NATS.Replicas, tc.want)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want uint64
		err  string
	}{
		{env: nil, want: 150 << 20},
		{env: []string{"PASSERELLE_MEMORY_LIMIT=1GiB"}, want: 1 << 30},
		{env: []string{"PASSERELLE_MEMORY_LIMIT=off"}, want: 0},
		{env: []string{"PASSERELLE_MEMORY_LIMIT=150KiB"}, err: `PASSERELLE_MEMORY_LIMIT: "150KiB" is below 32MiB`},
		{env: []string{"PASSERELLE_MEMORY_LIMIT=lots"}, err: `PASSERELLE_MEMORY_LIMIT: "lots": want a size such as 500MB or 64MiB, or off`},
	} {
		c, err := LoadFrom(context.Background(), tc.env)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one containing %q", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if got, err := ParseMemoryLimit(c.MemoryLimit); err != nil || got != tc.want {
			t.Errorf("%v: limit %d, %v; want %d", tc.env, got, err, tc.want)
		}
	}
}
