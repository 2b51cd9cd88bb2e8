package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/internal/redact/redacttest"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

const (
	simpleboHookSecret = "hook-secret-0123456789abcdef"
	simpleboHookToken  = "hook-token-42"
)

// startSimplebo runs a daemon wired to a Simplébo simulator, its webhook behind the secret path
// and a token, and a CRM receiver.
func startSimplebo(t *testing.T, sim *simplebosim.Sim, logs io.Writer) *fixture {
	t.Helper()
	f := newFixture(t, simpleboEnv(sim, simpleboHookToken)...)
	if logs != nil {
		f.Log = app.NewLogger(logs, "json", "debug")
	}
	f.start()
	return f
}

// simpleboEnv configures the Simplébo module against sim, its webhook behind the secret path
// (and, with a token, behind that token too).
func simpleboEnv(sim *simplebosim.Sim, token string) []string {
	env := []string{
		"PASSERELLE_SIMPLEBO_URL=" + sim.URL(),
		"PASSERELLE_SIMPLEBO_TOKEN=" + sim.Token(),
		"PASSERELLE_SIMPLEBO_PARTNER_CODE=" + sim.PartnerCode(),
		"PASSERELLE_SIMPLEBO_PARTNER=LBA",
		"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=" + simpleboHookSecret,
	}
	if token != "" {
		env = append(env, "PASSERELLE_SIMPLEBO_WEBHOOK_AUTH=token", "PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN="+token)
	}
	return env
}

func startSimpleboSim(t *testing.T) *simplebosim.Sim {
	t.Helper()
	sim, err := simplebosim.Start(simplebosim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim
}

// simpleboCRMEvent is a delivered simplebo.events envelope.
type simpleboCRMEvent struct {
	Type   string                  `json:"type"`
	ID     string                  `json:"id"`
	Source string                  `json:"source"`
	Data   pipelines.SimpleboEvent `json:"data"`
}

// simpleboDelivered is every Simplébo event the CRM received, once per id, in arrival order.
func simpleboDelivered(f *fixture) []simpleboCRMEvent {
	var out []simpleboCRMEvent
	seen := map[string]bool{}
	for _, d := range f.Receiver.Deliveries() {
		var ev simpleboCRMEvent
		if json.Unmarshal(d.Body, &ev) != nil || ev.Source != "simplebo" || seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		out = append(out, ev)
	}
	return out
}

// waitSimpleboEvent waits for a CRM event of typ about clientID matching ok, and returns it.
func waitSimpleboEvent(t *testing.T, f *fixture, typ, clientID string, ok func(simpleboCRMEvent) bool) simpleboCRMEvent {
	t.Helper()
	var got simpleboCRMEvent
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		for _, ev := range simpleboDelivered(f) {
			if ev.Type == typ && ev.Data.ClientID == clientID && (ok == nil || ok(ev)) {
				got = ev
				return true
			}
		}
		return false
	}), "no %s for %s reached the CRM", typ, clientID)
	return got
}

func simpleboClients(t *testing.T, f *fixture) map[string]pipelines.SimpleboClient {
	t.Helper()
	var list []pipelines.SimpleboClient
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/simplebo/clients", nil, &list))
	out := map[string]pipelines.SimpleboClient{}
	for _, c := range list {
		out[c.ClientID] = c
	}
	return out
}

func publishSimplebo(t *testing.T, f *fixture, cmd pipelines.SimpleboCommand) {
	t.Helper()
	b, err := json.Marshal(cmd)
	require.NoError(t, err)
	msg := message.NewMessage(cmd.Op+"-"+cmd.Client.ClientID, b)
	require.NoError(t, f.run.App.Pub.PublishContext(context.Background(), pipelines.TopicSimpleboProvision, msg))
}

func testCustomer(id string) simplebo.Customer {
	return simplebo.Customer{
		ClientID: id, Lastname: "Quatremains", Firstname: "Zephyrine", CompanyName: "Boulangerie Quatremains",
		Email: "zephyrine.quatremains@example.org", PhoneNumber1: "0671829304", Address1: "12 rue des Lilas",
		Zipcode: "69003", City: "Lyon", Country: "FR", Typology: 12,
		SIRET: "73282932000075", // fails its checksum: sent anyway, with a warning
	}
}

// Provisioning through the simplebo.provision topic: the mock-up and the activation reach
// Simplébo, their links reach the CRM, the client's identity is in the directory; a refusal
// (response 1 with HTTP 200) is dead-lettered with the partner's text; a 503 with Retry-After is
// retried until it goes through. The logs hold no personal data nor secret.
func TestSimpleboProvisioning(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	var logs redacttest.Buffer
	f := startSimplebo(t, sim, &logs)

	cu := testCustomer("P-1")
	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: cu})
	mock := waitSimpleboEvent(t, f, pipelines.EventClientMockupRequested, "P-1", nil)
	require.Equal(t, "https://sites.simplebo.example/P-1", mock.Data.RedirectTo)
	require.True(t, mock.Data.InvalidSIRET)
	rec, ok := sim.Client("P-1")
	require.True(t, ok)
	require.True(t, rec.Lead)
	require.Equal(t, cu, rec.Customer, "the customer reached Simplébo as sent, SIRET included")
	require.Equal(t, "LBA", rec.Partner)

	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpActivate, Client: cu})
	act := waitSimpleboEvent(t, f, pipelines.EventClientActivationRequested, "P-1", nil)
	require.Equal(t, "https://sites.simplebo.example/P-1", act.Data.RedirectTo)
	rec, _ = sim.Client("P-1")
	require.True(t, rec.Activated)

	cl := simpleboClients(t, f)["P-1"]
	require.Equal(t, "Boulangerie Quatremains", cl.Identity.CompanyName)
	require.Equal(t, cu.Email, cl.Identity.Email)
	require.Equal(t, cu.PhoneNumber1, cl.Identity.PhoneNumber1)
	require.Equal(t, cu.SIRET, cl.Identity.SIRET)
	require.Equal(t, cu.Address1, cl.Identity.Address1)
	require.Equal(t, pipelines.SimpleboOpMockup, cl.IdentitySource, "the activation sent nothing new")
	require.NotNil(t, cl.MockupRequestedAt)
	require.NotNil(t, cl.ActivationRequestedAt)
	require.Equal(t, 12, *cl.Typology)
	require.Empty(t, cl.State, "no webhook yet")

	// A refusal with HTTP 200 goes to the dead letters with its text.
	sim.RejectNext(1, "Typologie inconnue")
	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: testCustomer("P-2")})
	var dls []app.DeadLetterView
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		dls = nil
		f.adminJSON(t, http.MethodGet, "/admin/dlq?pipeline=simplebo", nil, &dls)
		return len(dls) > 0
	}), "no dead letter")
	require.Len(t, dls, 1)
	require.Contains(t, dls[0].Error, "Typologie inconnue")
	require.Contains(t, dls[0].Error, "permanent")
	require.Equal(t, pipelines.TopicSimpleboProvision, dls[0].Topic)
	_, ok = sim.Client("P-2")
	require.False(t, ok)

	// 503 with Retry-After, three times: more than one call's retries, so the message is
	// redelivered, and the engine waits out the pause.
	before := sim.Requests("/v1/leads")
	sim.FailNext(3, http.StatusServiceUnavailable, time.Second)
	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: testCustomer("P-3")})
	waitSimpleboEvent(t, f, pipelines.EventClientMockupRequested, "P-3", nil)
	require.GreaterOrEqual(t, sim.Requests("/v1/leads")-before, 4)

	// The admin API queues a command on the topic, and refuses one the stage would dead-letter.
	var queued map[string]string
	require.Equal(t, http.StatusAccepted, f.adminJSON(t, http.MethodPost, "/admin/simplebo/provision",
		pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: testCustomer("P-4")}, &queued))
	require.Equal(t, pipelines.TopicSimpleboProvision, queued["topic"])
	waitSimpleboEvent(t, f, pipelines.EventClientMockupRequested, "P-4", nil)
	bad := testCustomer("P-5")
	bad.Email = ""
	require.Equal(t, http.StatusBadRequest, f.adminJSON(t, http.MethodPost, "/admin/simplebo/provision",
		pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: bad}, nil))
	require.Equal(t, http.StatusBadRequest, f.adminJSON(t, http.MethodPost, "/admin/simplebo/provision",
		pipelines.SimpleboCommand{Op: "delete", Client: testCustomer("P-6")}, nil))
	scrape := f.scrape(t)
	v, _ := metric(scrape, "passerelle_simplebo_api_calls_total", map[string]string{"op": "mockup", "outcome": "retry"})
	require.GreaterOrEqual(t, v, 1.0)
	v, _ = metric(scrape, "passerelle_simplebo_api_calls_total", map[string]string{"op": "mockup", "outcome": "permanent"})
	require.Equal(t, 1.0, v)
	v, _ = metric(scrape, "passerelle_simplebo_clients", map[string]string{"state": "none"})
	require.Equal(t, 3.0, v, "P-1, P-3 and P-4, provisioned, no event yet")

	f.stop()
	out := logs.String()
	require.Contains(t, out, "SIRET fails its checksum")
	redacttest.RequireNoLeak(t, out, cu.Lastname, cu.Firstname, cu.Email, "zephyrine.quatremains", cu.PhoneNumber1, cu.SIRET,
		cu.Address1, sim.Token(), simpleboHookSecret, simpleboHookToken)
}

// The operator commands: mockup and activate call Simplébo and print the link (or JSON), the
// directory lists the client; clients goes through the daemon.
func TestSimpleboCommands(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	f := startSimplebo(t, sim, nil)

	run := func(jsonOut bool, args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		cli := &modules.CLI{
			Out: &stdout, Err: &stderr,
			Config: func(ctx context.Context) (config.Config, error) { return app.LoadConfig(ctx, f.environ()) },
			Admin: func(ctx context.Context, method, path string, body, out any) error {
				if status := f.adminJSON(t, method, path, body, out); status != http.StatusOK {
					return fmt.Errorf("admin %s %s: HTTP %d", method, path, status)
				}
				return nil
			},
			JSON: func() bool { return jsonOut },
		}
		root := &cobra.Command{Use: "passerelle", SilenceUsage: true, SilenceErrors: true}
		root.AddCommand((&modules.Simplebo{}).Commands(cli)...)
		root.SetOut(&stdout)
		root.SetErr(&stderr)
		root.SetArgs(args)
		err := root.ExecuteContext(context.Background())
		return stdout.String(), stderr.String(), err
	}
	flags := []string{"--client-id", "CLI-1", "--company", "ACME", "--lastname", "Oberkampfova", "--firstname", "Gaspardine",
		"--email", "gaspardine@example.net", "--phone", "0785961524", "--zipcode", "75011", "--city", "Paris", "--typology", "3",
		"--siret", "73282932000074", "--address", "1 rue Oberkampf"}

	stdout, stderr, err := run(false, append([]string{"simplebo", "mockup"}, flags...)...)
	require.NoError(t, err, stderr)
	require.Equal(t, "https://sites.simplebo.example/CLI-1\n", stdout)
	require.NotContains(t, stderr, "SIRET", "a valid SIRET gets no warning")
	rec, ok := sim.Client("CLI-1")
	require.True(t, ok)
	require.Equal(t, "FR", rec.Customer.Country, "country defaults to FR")
	require.Equal(t, 3, rec.Customer.Typology)

	stdout, stderr, err = run(true, append([]string{"simplebo", "activate"}, flags...)...)
	require.NoError(t, err, stderr)
	var res pipelines.SimpleboResult
	require.NoError(t, json.Unmarshal([]byte(stdout), &res), stdout)
	require.Equal(t, pipelines.SimpleboResult{ClientID: "CLI-1", Op: "activate", RedirectTo: "https://sites.simplebo.example/CLI-1"}, res)
	require.Len(t, sim.Customers(), 1)

	stdout, stderr, err = run(false, "simplebo", "clients")
	require.NoError(t, err, stderr)
	require.Contains(t, stdout, "CLI-1")
	require.Contains(t, stdout, "ACME")
	stdout, _, err = run(true, "simplebo", "clients")
	require.NoError(t, err)
	var list []pipelines.SimpleboClient
	require.NoError(t, json.Unmarshal([]byte(stdout), &list), stdout)
	require.Len(t, list, 1)
	require.Equal(t, "gaspardine@example.net", list[0].Identity.Email)
	require.Equal(t, "1 rue Oberkampf", list[0].Identity.Address1)
	require.NotNil(t, list[0].ActivationRequestedAt)

	_, _, err = run(false, "simplebo", "mockup", "--client-id", "X")
	require.ErrorContains(t, err, "required flag(s)")
	_, _, err = run(false, append([]string{"simplebo", "mockup"}, append(flags, "--country", " ")...)...)
	var ue modules.UsageError
	require.ErrorAs(t, err, &ue, "a customer Simplébo would refuse is a usage error")
	require.Contains(t, err.Error(), "country")

	sim.RejectNext(1, "Client déjà actif")
	_, _, err = run(false, append([]string{"simplebo", "activate"}, flags...)...)
	require.ErrorContains(t, err, "Client déjà actif")
}

// Client-state webhooks: the secret path and the token guard them; repeated and shuffled
// deliveries end in the newest state, each change reaching the CRM once; a code the map does
// not name reaches the CRM as is.
func TestSimpleboWebhookStates(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	var logs redacttest.Buffer
	f := startSimplebo(t, sim, &logs)
	base := "http://" + f.run.App.HTTPAddr()
	hook := base + "/webhooks/simplebo/" + simpleboHookSecret
	auth := simplebosim.WithAuth(httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: simpleboHookToken})
	ctx := context.Background()

	start := time.Now().AddDate(0, -6, 0)
	chain := simplebosim.EventsFor("W-1", start, simplebo.LeadCreated, simplebo.ServiceActivated, simplebo.BillingStarted)

	// Guards: a wrong secret is answered as an unknown path is; a wrong token is 401.
	unknownStatus, unknownBody := postRaw(t, base+"/webhooks/nothing", http.Header{}, nil)
	for _, url := range []string{base + "/webhooks/simplebo/wrong-secret-0123456789", base + "/webhooks/simplebo/", base + "/webhooks/simplebo/x/" + simpleboHookSecret} {
		status, body := postRaw(t, url, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {`Token token="` + simpleboHookToken + `"`}},
			[]byte(chain[0].Values().Encode()))
		require.Equal(t, http.StatusNotFound, status, url)
		require.Equal(t, unknownStatus, status)
		require.JSONEq(t, string(unknownBody), string(body), "no hint that the path exists")
	}
	status, err := sim.SendEvent(ctx, hook, chain[0])
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "no token")
	status, err = sim.SendEvent(ctx, hook, chain[0], simplebosim.WithAuth(httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: "nope"}))
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "wrong token")

	// Each event three times, shuffled.
	r := rand.New(rand.NewPCG(3, 4))
	var evs []simplebo.Event
	for range 3 {
		evs = append(evs, chain...)
	}
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	for i, ev := range evs {
		enc := []simplebosim.Encoding{simplebosim.Form, simplebosim.Multipart, simplebosim.JSON}[i%3]
		status, err := sim.SendEvent(ctx, hook, ev, auth, simplebosim.WithEncoding(enc))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "event %d", i)
	}
	// The newest state wins, whatever the order.
	var cl pipelines.SimpleboClient
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		cl = simpleboClients(t, f)["W-1"]
		return cl.State == pipelines.SimpleboBillingStarted
	}), "state %q", cl.State)
	require.Equal(t, chain[2].BillingStartingDate, cl.Contract.BillingStartingDate)
	require.Equal(t, 3, *cl.StateCode)
	require.Equal(t, "Boulangerie W-1", cl.Identity.CompanyName, "the snapshot fills the directory")

	// Each change reached the CRM once, the last one into billing_started.
	last := waitSimpleboEvent(t, f, pipelines.EventClientStateChanged, "W-1", func(ev simpleboCRMEvent) bool {
		return ev.Data.To == pipelines.SimpleboBillingStarted
	})
	require.NotNil(t, last.Data.Contract)
	require.Equal(t, chain[2].BillingStartingDate, last.Data.Contract.BillingStartingDate)
	require.JSONEq(t, string(chain[2].Canonical()), string(last.Data.Raw), "the event as received")

	// A code the map does not name: recorded, counted, and sent to the CRM as is.
	odd := chain[1]
	odd.Client.ClientID, odd.Type, odd.TypeRaw = "W-2", 9, "9"
	status, err = sim.SendEvent(ctx, hook, odd, auth)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	unk := waitSimpleboEvent(t, f, pipelines.EventClientStateChanged, "W-2", nil)
	require.True(t, unk.Data.UnknownCode)
	require.Equal(t, 9, *unk.Data.EventType)
	require.Empty(t, unk.Data.To)
	require.JSONEq(t, string(odd.Canonical()), string(unk.Data.Raw))

	// Then an older event after the newest: recorded, nothing changes, nothing sent.
	stale := simplebosim.EventsFor("W-1", start.AddDate(0, 0, -1), simplebo.LeadCreated)[0] // another lead, a day earlier
	status, err = sim.SendEvent(ctx, hook, stale, auth)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	var stales float64
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		stales, _ = metric(f.scrape(t), "passerelle_simplebo_state_events_total", map[string]string{"state": pipelines.SimpleboLeadCreated, "verdict": "stale"})
		return stales >= 1
	}))
	require.Equal(t, pipelines.SimpleboBillingStarted, simpleboClients(t, f)["W-1"].State)

	scrape := f.scrape(t)
	v, _ := metric(scrape, "passerelle_simplebo_state_events_total", map[string]string{"state": "unknown", "verdict": "unknown"})
	require.Equal(t, 1.0, v)
	v, _ = metric(scrape, "passerelle_simplebo_clients", map[string]string{"state": pipelines.SimpleboBillingStarted})
	require.Equal(t, 1.0, v)
	v, _ = metric(scrape, "passerelle_simplebo_webhook_requests_total", map[string]string{"code": "401"})
	require.Equal(t, 2.0, v)
	var changes []string
	for _, ev := range simpleboDelivered(f) {
		if ev.Type == pipelines.EventClientStateChanged && ev.Data.ClientID == "W-1" {
			changes = append(changes, ev.Data.From+">"+ev.Data.To)
		}
	}
	require.NotEmpty(t, changes)
	require.LessOrEqual(t, len(changes), 3, "changes %v", changes)
	require.True(t, strings.HasSuffix(changes[len(changes)-1], ">"+pipelines.SimpleboBillingStarted), "changes %v", changes)
	require.False(t, slices.ContainsFunc(changes, func(s string) bool { return strings.HasPrefix(s, pipelines.SimpleboBillingStarted+">") }),
		"never backwards: %v", changes)
	ids := map[string]int{}
	for _, d := range f.Receiver.Deliveries() {
		ids[d.ID]++
	}
	for id, n := range ids {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}

	f.stop()
	snap := simplebosim.SnapshotFor("W-1")
	redacttest.RequireNoLeak(t, logs.String(), snap.Email, snap.PhoneNumber1, snap.Lastname, snap.Firstname, snap.Address1,
		simpleboHookSecret, simpleboHookToken)
}

// One Simplébo client's life, end to end: a mock-up, then the activation, through the API; the
// webhooks 0, 1 and 3; a row in the billing file for each month it is billed (source simplebo, the
// configured code and price); its contract ends, and the month after has no row.
func TestSimpleboClientsInTheBillingFile(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	f := newFixture(t, append(simpleboEnv(sim, ""),
		"PASSERELLE_SIMPLEBO_BILLING_PRICE=29.00",
		"PASSERELLE_SIMPLEBO_BILLING_CODE=SB-SITE-AMM",
	)...)
	f.start()
	hook := "http://" + f.run.App.HTTPAddr() + "/webhooks/simplebo/" + simpleboHookSecret
	ctx := context.Background()

	cu := testCustomer("B-1")
	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpMockup, Client: cu})
	waitSimpleboEvent(t, f, pipelines.EventClientMockupRequested, "B-1", nil)
	publishSimplebo(t, f, pipelines.SimpleboCommand{Op: pipelines.SimpleboOpActivate, Client: cu})
	waitSimpleboEvent(t, f, pipelines.EventClientActivationRequested, "B-1", nil)

	now := time.Now()
	twoAgo := pipelines.PeriodOf(now).Previous().Previous()
	lastMonth := pipelines.PeriodOf(now).Previous()
	chain := simplebosim.EventsFor("B-1", now.AddDate(0, -10, 0), simplebo.LeadCreated, simplebo.ServiceActivated, simplebo.BillingStarted)
	for _, ev := range chain {
		status, err := sim.SendEvent(ctx, hook, ev)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
	}
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		return simpleboClients(t, f)["B-1"].State == pipelines.SimpleboBillingStarted
	}))

	// The client directory knows the client by its Simplébo client_id, with where each field came from.
	dir, ok, err := f.run.App.Store.ClientByKey(ctx, store.KeyClientID, "B-1")
	require.NoError(t, err)
	require.True(t, ok, "Simplébo's clients are in the client directory")
	require.NotEmpty(t, dir.Fields[store.FieldCompany].Value)
	require.Contains(t, dir.Fields[store.FieldCompany].Source, "simplebo")

	rowsOf := func(p transforms.Period) []string {
		var rep pipelines.Report
		require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": p.String(), "dry_run": true}, &rep))
		var rows []string
		for _, line := range strings.Split(strings.TrimSpace(rep.CSV), "\r\n")[1:] {
			if strings.Contains(line, ";simplebo;") {
				rows = append(rows, line)
			}
		}
		return rows
	}
	for _, p := range []transforms.Period{twoAgo, lastMonth} {
		rows := rowsOf(p)
		require.Len(t, rows, 1, "period %s", p)
		start, end := p.Bounds(time.UTC)
		want := strings.Join([]string{p.String(), "B-1"}, ";")
		require.True(t, strings.HasPrefix(rows[0], want), "%s", rows[0])
		require.Contains(t, rows[0], ";simplebo;SB-SITE-AMM;Site Simplébo;1;29.00;29.00;"+start.Format("2006-01-02")+";"+end.AddDate(0, 0, -1).Format("2006-01-02"))
	}

	// The contract ends on the last day of the month before last: that month stays billed, the
	// next one is not.
	_, end := twoAgo.Bounds(time.UTC)
	ended := chain[2]
	ended.Type, ended.TypeRaw = simplebo.ContractEnded, "2"
	ended.EndOfContractDate = end.AddDate(0, 0, -1)
	status, err := sim.SendEvent(ctx, hook, ended)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		return simpleboClients(t, f)["B-1"].State == pipelines.SimpleboContractEnded
	}))
	require.Len(t, rowsOf(twoAgo), 1)
	require.Empty(t, rowsOf(lastMonth), "no row after the contract ended")
}

// With two CRM endpoints, each has a stage of its own on the ordered simplebo.events topic: the one
// that answers 410 is disabled and holds its events while the other receives every client's
// events in order; once enabled, it receives them all too, in the same order, each once.
func TestSimpleboEventsReachEachEndpointOnItsOwn(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	f := newFixture(t, simpleboEnv(sim, simpleboHookToken)...)
	gone := startCountingCRM(t, f.Secret)
	gone.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusGone})
	f.Env = append(f.Env, "PASSERELLE_CRM_URL="+f.CRMURL+","+gone.url)
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var ids []string
	for i := range 4 {
		for _, client := range []string{"E-1", "E-2"} {
			ev := pipelines.SimpleboEvent{Type: pipelines.EventClientStateChanged, ID: fmt.Sprintf("simplebo_own_%s_%d", client, i), ClientID: client, OccurredAt: time.Now().UTC()}
			b, err := json.Marshal(ev)
			require.NoError(t, err)
			msg := message.NewMessage(ev.ID, b)
			msg.Metadata.Set(pipelines.MetaEventID, ev.ID)
			msg.Metadata.Set(pipelines.MetaOrderingKey, ev.ClientID)
			require.NoError(t, f.run.App.Pub.PublishContext(ctx, pipelines.TopicSimpleboEvents, msg))
			ids = append(ids, ev.ID)
		}
	}
	order := func(d []crmsim.Delivery) []string {
		var out []string
		for _, x := range d {
			out = append(out, x.ID)
		}
		return out
	}
	require.NoError(t, f.Receiver.WaitForUnique(ctx, len(ids)), "the endpoint that is up is not held back")
	require.Equal(t, ids, order(f.Receiver.Deliveries()))
	goneID := pipelines.EndpointID(gone.url)
	var views []app.EndpointView
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		views = nil
		return f.adminJSON(t, http.MethodGet, "/admin/endpoints", nil, &views) == http.StatusOK &&
			len(views) == 1 && views[0].Endpoint == goneID && views[0].Disabled && views[0].Held == 1
	}), "the 410 endpoint disabled, its first event held: %+v", views)
	require.Equal(t, 1, gone.Attempts())
	scrape := f.scrape(t)
	for _, u := range []string{f.CRMURL, gone.url} {
		stage := strings.TrimPrefix(pipelines.CRMStageName(pipelines.PipelineSimplebo, u), pipelines.PipelineSimplebo+".")
		_, ok := metric(scrape, "passerelle_stage_messages_total", map[string]string{"pipeline": pipelines.PipelineSimplebo, "stage": stage, "outcome": "in"})
		require.True(t, ok, "a stage of its own for %s", stage)
	}

	gone.SetFault(crmsim.Fault{})
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/endpoints/enable", map[string]string{"endpoint": goneID}, nil))
	require.NoError(t, gone.WaitForUnique(ctx, len(ids)))
	require.Equal(t, ids, order(gone.Deliveries()), "once enabled, every event in order")
	require.Zero(t, gone.Rejected())
	require.Equal(t, ids, order(f.Receiver.Deliveries()), "nothing twice to the other")
}
