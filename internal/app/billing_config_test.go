package app_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/modules"
)

// billingWhy is what check-config prints for the billing module under env.
func billingWhy(t *testing.T, env ...string) (bool, string) {
	t.Helper()
	cfg, err := app.LoadConfig(context.Background(), env)
	require.NoError(t, err)
	for _, m := range app.ModuleStates(cfg, app.Modules()) {
		if m.Name == "billing" {
			return m.On, m.Why
		}
	}
	t.Fatal("no billing module")
	return false, ""
}

// The rules file is read and checked at start, its errors naming the line; check-config says which
// table is in force and whether the schedule runs.
func TestBillingRulesFileAndScheduleConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("rules:\n  - match: \"*-S\"\n    bill: once\n  - match: \"*-AMM\"\n    bill: weekly\n"), 0o600))
	_, err := app.LoadConfig(context.Background(), []string{"PASSERELLE_BILLING_RULES_FILE=" + bad})
	require.ErrorContains(t, err, "PASSERELLE_BILLING_RULES_FILE: "+bad+": billing rules: line 5")
	require.ErrorContains(t, err, `unknown bill "weekly"`)
	_, err = app.LoadConfig(context.Background(), []string{"PASSERELLE_BILLING_RULES_FILE=" + filepath.Join(dir, "missing.yaml")})
	require.ErrorContains(t, err, "PASSERELLE_BILLING_RULES_FILE")

	good := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(good, []byte("rules:\n  - match: \"IN-*-S\"\n    bill: once\n  - match: \"*\"\n    bill: monthly\n"), 0o600))
	sftp := []string{"PASSERELLE_SFTP_ADDR=127.0.0.1:2222", "PASSERELLE_SFTP_PASSWORD=x", "PASSERELLE_SFTP_KNOWN_HOSTS=/dev/null"}

	on, why := billingWhy(t, sftp...)
	require.True(t, on)
	require.Contains(t, why, `on "0 6 1 * *" (Europe/Paris); built-in rules (*-S once, *-AMM monthly, *-AMA annual)`)
	on, why = billingWhy(t, append(sftp, "PASSERELLE_BILLING_SCHEDULE=off", "PASSERELLE_BILLING_RULES_FILE="+good)...)
	require.True(t, on)
	require.Contains(t, why, "schedule off (PASSERELLE_BILLING_SCHEDULE=off): only `passerelle billing run` uploads")
	require.Contains(t, why, "rules from "+good+" (IN-*-S once, * monthly)")
	_, why = billingWhy(t, "PASSERELLE_BILLING_RULES_FILE="+good)
	require.Contains(t, why, "nothing is uploaded; rules from "+good)
}

// A daemon with the schedule off and a rules file builds new periods with that file's table,
// answers 400 for a period not over, and its status shows what the last build billed and the
// rules frozen for the period.
func TestBillingStatusAndRulesFile(t *testing.T) {
	t.Parallel()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte("rules:\n  - match: \"*\"\n    bill: never\n"), 0o600))
	f := newFixture(t, "PASSERELLE_BILLING_SCHEDULE=off", "PASSERELLE_BILLING_RULES_FILE="+rules)
	f.start()

	var errBody struct {
		Message string `json:"message"`
	}
	require.Equal(t, http.StatusBadRequest, f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": "2999-01", "dry_run": true}, &errBody))
	require.Contains(t, errBody.Message, "period not over: 2999-01 ends on 2999-02-01")

	var rep struct {
		Outcome string `json:"outcome"`
		Rows    int    `json:"rows"`
	}
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": "2026-01", "dry_run": true}, &rep))
	require.Equal(t, "dry_run", rep.Outcome)

	var st modules.BillingStatus
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/billing", nil, &st))
	require.Equal(t, "off", st.Schedule)
	require.Contains(t, st.Rules, "rules from "+rules+" (* never)")
	require.Len(t, st.Periods, 1)
	p := st.Periods[0]
	require.Equal(t, "2026-01", p.Period)
	require.NotNil(t, p.LastBuild)
	require.Equal(t, "dry_run", p.LastBuild.Outcome)
	require.Equal(t, 0, p.LastBuild.Rows)
	require.True(t, strings.Contains(p.FrozenRules, `match: "*"`) && strings.Contains(p.FrozenRules, "bill: never"), p.FrozenRules)
	require.Nil(t, st.LedgerLastPoll, "no Shop Application change yet")

	scrape := f.scrape(t)
	for _, name := range []string{"passerelle_billing_unknown_codes", "passerelle_billing_clients_without_identity", "passerelle_billing_ledger_last_poll_timestamp_seconds"} {
		_, ok := metric(scrape, name, nil)
		require.True(t, ok, "%s exposed from the start", name)
	}
}

// The README's table of what is billable in a month names a test per line: each must exist, so the
// table cannot drift from what is tested.
func TestReadmeBillableTableNamesRealTests(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "### What is billable in a month")
	require.GreaterOrEqual(t, start, 0, "README has no billable table")
	section := text[start:]
	section = section[:strings.Index(section, "\n### ")]
	var src strings.Builder
	for _, dir := range []string{"../../transforms", "../../pipelines"} {
		files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
		require.NoError(t, err)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			src.Write(b)
		}
	}
	rows := 0
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| situation") {
			continue
		}
		cells := strings.Split(line, "|")
		tests := cells[len(cells)-2]
		named := 0
		for _, part := range strings.Split(tests, "`") {
			fn, sub, ok := strings.Cut(strings.TrimSpace(part), "/")
			if !ok || !strings.HasPrefix(fn, "Test") {
				continue
			}
			named++
			require.True(t, strings.Contains(src.String(), "func "+fn+"("), "README names %s: no such test", part)
			// go test writes a subtest's spaces as underscores.
			require.True(t, strings.Contains(src.String(), `"`+strings.ReplaceAll(sub, "_", " ")+`"`), "README names %s: no such case", part)
		}
		require.Positive(t, named, "line without a test: %s", line)
		rows++
	}
	require.GreaterOrEqual(t, rows, 15)
}
