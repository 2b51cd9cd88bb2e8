package modules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/app/apptest"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/transforms"
)

func TestBiwayConfigValidate(t *testing.T) {
	t.Parallel()
	base := []string{"PASSERELLE_DATA_DIR=" + t.TempDir()}
	on := []string{"PASSERELLE_BIWAY_URL=http://127.0.0.1:1", "PASSERELLE_BIWAY_API_KEY=k"}
	tests := []struct {
		name string
		env  []string
		bad  []string // variables the error names; none: valid
	}{
		{"off by default", nil, nil},
		{"on with defaults", on, nil},
		{"lead ack on", append(on, "PASSERELLE_BIWAY_LEAD_ACK=on", "PASSERELLE_BIWAY_TEMPLATE=tpl"), nil},
		{"window across midnight", append(on, "PASSERELLE_BIWAY_SEND_WINDOW=22:00-06:00 Europe/Paris fri-sun"), nil},
		{"key missing", []string{"PASSERELLE_BIWAY_URL=http://127.0.0.1:1"}, []string{"PASSERELLE_BIWAY_API_KEY"}},
		{"not a URL", []string{"PASSERELLE_BIWAY_URL=ftp://x", "PASSERELLE_BIWAY_API_KEY=k"}, []string{"PASSERELLE_BIWAY_URL"}},
		{"lead ack without template", append(on, "PASSERELLE_BIWAY_LEAD_ACK=on"), []string{"PASSERELLE_BIWAY_TEMPLATE"}},
		{"lead ack without partner", []string{"PASSERELLE_BIWAY_LEAD_ACK=on", "PASSERELLE_BIWAY_TEMPLATE=t"}, []string{"PASSERELLE_BIWAY_LEAD_ACK"}},
		{"lead ack yes", append(on, "PASSERELLE_BIWAY_LEAD_ACK=yes"), []string{"PASSERELLE_BIWAY_LEAD_ACK"}},
		{"channel", append(on, "PASSERELLE_BIWAY_CHANNEL=mms"), []string{"PASSERELLE_BIWAY_CHANNEL"}},
		{"window", append(on, "PASSERELLE_BIWAY_SEND_WINDOW=8h-20h"), []string{"PASSERELLE_BIWAY_SEND_WINDOW"}},
		{"per day", append(on, "PASSERELLE_BIWAY_MAX_PER_NUMBER_PER_DAY=0"), []string{"PASSERELLE_BIWAY_MAX_PER_NUMBER_PER_DAY"}},
		{"secret", append(on, "PASSERELLE_BIWAY_CALLBACK_SECRET=hunter2"), []string{"PASSERELLE_BIWAY_CALLBACK_SECRET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.LoadConfig(context.Background(), append(append([]string{}, base...), tt.env...))
			if len(tt.bad) == 0 {
				require.NoError(t, err)
				on, why := (&modules.Biway{}).Enabled(cfg)
				require.NotEmpty(t, why)
				require.Equal(t, len(tt.env) > 0, on)
				return
			}
			require.Error(t, err)
			for _, v := range tt.bad {
				require.Contains(t, err.Error(), v)
			}
			require.NotContains(t, err.Error(), "hunter2", "the error quotes no secret")
		})
	}
}

func TestReadBroadcastCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		to      []string
		vars    []map[string]string
		refused []string
	}{
		{"bare numbers", "0612345678\n+33 7 12 34 56 78\n", []string{"+33612345678", "+33712345678"}, []map[string]string{nil, nil}, nil},
		{"header names variables", "to,prenom,ville\n06 12 34 56 78,Alice,Lyon\n", []string{"+33612345678"},
			[]map[string]string{{"prenom": "Alice", "ville": "Lyon"}}, nil},
		{"landline and junk refused", "0145678901\nabc\n0612345678\n", []string{"+33612345678"}, []map[string]string{nil}, []string{"0145678901", "abc"}},
		{"a number twice is kept once", "0612345678\n+33612345678\n\n", []string{"+33612345678"}, []map[string]string{nil}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, refused, err := modules.ReadBroadcastCSV([]byte(tt.in))
			require.NoError(t, err)
			var to []string
			var vars []map[string]string
			for _, r := range got {
				to, vars = append(to, r.To), append(vars, r.Variables)
			}
			require.Equal(t, tt.to, to)
			require.Equal(t, tt.vars, vars)
			var ref []string
			for _, r := range refused {
				ref = append(ref, r.To)
			}
			require.Equal(t, tt.refused, ref)
		})
	}
	_, _, err := modules.ReadBroadcastCSV([]byte("\"unterminated\n"))
	require.Error(t, err)
}

func FuzzReadBroadcastCSV(f *testing.F) {
	f.Add([]byte("to,prenom\n0612345678,Alice\n"))
	f.Add([]byte("0612345678\n0145678901\n\"a\"\"b\",c\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, _, err := modules.ReadBroadcastCSV(raw)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range got {
			if !transforms.IsMobile(r.To) || seen[r.To] {
				t.Fatalf("recipient %q: not a mobile, or twice", r.To)
			}
			seen[r.To] = true
		}
	})
}

// biwayDaemon is a running daemon with the Bi-way module on, and the environment its commands read.
type biwayDaemon struct {
	sim     *biwaysim.Sim
	app     *app.App
	environ []string
}

// startBiwayDaemon runs the daemon with the partner at partnerURL (the simulator, or a proxy to it).
func startBiwayDaemon(t *testing.T, partnerURL string, sim *biwaysim.Sim) *biwayDaemon {
	t.Helper()
	environ := []string{
		"PASSERELLE_HTTP_ADDR=127.0.0.1:0", "PASSERELLE_ADMIN_ADDR=127.0.0.1:0", "PASSERELLE_DATA_DIR=" + t.TempDir(),
		"PASSERELLE_BIWAY_URL=" + partnerURL, "PASSERELLE_BIWAY_API_KEY=" + sim.APIKey(), "PASSERELLE_SHUTDOWN_TIMEOUT=10s",
	}
	a := apptest.Start(t, environ)
	return &biwayDaemon{sim: sim, app: a, environ: environ}
}

// run runs `biway args…` as the CLI does and returns its error and output.
func (d *biwayDaemon) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cli := &modules.CLI{
		Out: &out, Err: &errOut,
		Config: func(ctx context.Context) (config.Config, error) { return app.LoadConfig(ctx, d.environ) },
		Admin: func(ctx context.Context, method, path string, body, v any) error {
			var rd io.Reader
			if body != nil {
				b, err := json.Marshal(body)
				if err != nil {
					return err
				}
				rd = bytes.NewReader(b)
			}
			req, err := http.NewRequestWithContext(ctx, method, "http://"+d.app.AdminAddr()+path, rd)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("admin %s: %d %s", path, resp.StatusCode, b)
			}
			return json.Unmarshal(b, v)
		},
		JSON: func() bool { return false },
	}
	root := &cobra.Command{Use: "passerelle", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand((&modules.Biway{}).Commands(cli)...)
	root.SetArgs(append([]string{"biway"}, args...))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

// register-callback, the set-up commands and status, against the running daemon and the
// simulator.
func TestBiwayCommands(t *testing.T) {
	t.Parallel()
	sim, err := biwaysim.Start(biwaysim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	d := startBiwayDaemon(t, sim.URL(), sim)

	_, err = d.run(t, "register-callback")
	require.ErrorContains(t, err, "--url", "a daemon on port 0 cannot guess its URL")
	hook := "http://" + d.app.HTTPAddr() + "/webhooks/biway"
	out, err := d.run(t, "register-callback", "--url", hook)
	require.NoError(t, err)
	require.Contains(t, out, "secret generated and stored")
	u, secret := sim.Callback()
	require.Equal(t, hook, u)
	require.NotContains(t, out, secret, "the secret is never printed")

	out, err = d.run(t, "company", "create", "--nom", "ACME Formation", "--siret", "73282932000074")
	require.NoError(t, err)
	var company biway.Entity
	require.NoError(t, json.Unmarshal([]byte(out), &company))
	require.Equal(t, "pending", company.Etat)
	for _, args := range [][]string{
		{"account", "create", "--etablissement", company.ID, "--nom", "Martin", "--email", "m@acme.example"},
		{"agent", "create", "--nom", "ACME"},
		{"template", "create", "--nom", "accuse", "--texte", "Bonjour {prenom}", "--variables", "prenom"},
	} {
		out, err := d.run(t, args...)
		require.NoError(t, err, "%v", args)
		require.Contains(t, out, `"id"`, "%v prints the partner's answer", args)
	}
	_, err = d.run(t, "tester", "create", "--agent", "a", "--telephone", "0145678901")
	require.ErrorIs(t, err, biway.ErrNotMobile)
	_, err = d.run(t, "company", "create", "--nom", "x")
	require.ErrorContains(t, err, `required flag(s) "siret" not set`)

	sim.SetEntityState("COMPANY_STATE", company.ID, "active")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, sim.Flush(ctx))
	require.Eventually(t, func() bool {
		out, err := d.run(t, "status")
		return err == nil && strings.Contains(out, company.ID) && strings.Contains(out, "active")
	}, 20*time.Second, 50*time.Millisecond)
	out, err = d.run(t, "status")
	require.NoError(t, err)
	require.Contains(t, out, hook)
	require.Contains(t, out, "stored by register-callback")
}

// A broadcast of 10,001 numbers goes out in two calls; cut after the first (a crash), the same
// command again messages nobody twice. A dry run sends nothing.
func TestBiwayBroadcast(t *testing.T) {
	t.Parallel()
	sim, err := biwaysim.Start(biwaysim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	target, err := url.Parse(sim.URL())
	require.NoError(t, err)
	var broadcasts atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == biway.RouteBroadcast {
			if n := broadcasts.Add(1); n >= 2 && n <= 4 { // the second batch and its two retries
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	d := startBiwayDaemon(t, front.URL, sim)

	var csv strings.Builder
	csv.WriteString("to,prenom\n")
	for i := range 10001 {
		fmt.Fprintf(&csv, "06%08d,P%d\n", i, i)
	}
	csv.WriteString("0145678901,Fixe\nnot a number,X\n")
	file := filepath.Join(t.TempDir(), "numbers.csv")
	require.NoError(t, os.WriteFile(file, []byte(csv.String()), 0o600))

	out, err := d.run(t, "broadcast", "--template", "tpl_rentree", "--to-file", file, "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "10001 recipients would be sent (dry run: nothing sent) in 2 batch(es), 2 refused")
	require.Contains(t, out, "refused 0145678901")
	require.Zero(t, sim.Requests())

	_, err = d.run(t, "broadcast", "--template", "tpl_rentree", "--to-file", file)
	require.ErrorContains(t, err, "batch 2 of 2")
	require.Len(t, sim.Submissions(), biway.MaxBroadcast, "the first batch went out")

	out, err = d.run(t, "broadcast", "--template", "tpl_rentree", "--to-file", file)
	require.NoError(t, err)
	require.Contains(t, out, "10001 recipients accepted in 2 batch(es), 2 refused")
	subs := sim.Submissions()
	require.Len(t, subs, 10001, "nobody messaged twice")
	for _, n := range []string{"+33600000000", "+33600010000"} {
		require.Equal(t, 1, sim.MessagesTo(n), n)
	}
	require.Equal(t, map[string]string{"prenom": "P0"}, subs[0].Variables)
}
