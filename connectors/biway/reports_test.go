package biway_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
)

// wire starts a callback handler over st, and registers it with sim through the client.
func wire(t *testing.T, sim *biwaysim.Sim, c *biway.Client, st *store) {
	t.Helper()
	url := serve(t, biway.CallbackConfig{Secret: func() string { return testSecret }}, st)
	_, err := c.RegisterCallback(t.Context(), url, testSecret)
	require.NoError(t, err)
}

// TestReportsDuplicatedAndShuffled: every callback posted three times, in a shuffled order,
// still leaves each message in its chain's last state once Advance filters them.
func TestReportsDuplicatedAndShuffled(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3, 42} {
		sim := startSim(t, biwaysim.SimConfig{Duplicates: 3, Shuffle: true, Seed: seed})
		c := newClient(t, sim)
		st := newStore()
		wire(t, sim, c, st)
		ctx := t.Context()

		want := map[string]biway.State{}
		for i, tc := range []struct {
			to, canal string
			want      biway.State
		}{
			{rcsNumber, biway.ChannelAuto, biway.StateRead},      // RCS-capable: read
			{smsNumber, biway.ChannelAuto, biway.StateDelivered}, // SMS has no read
			{"+33712345670", biway.ChannelSMS, biway.StateDelivered},
			{failNumber, biway.ChannelAuto, biway.StateFailed},
			{"+33612345671", biway.ChannelRCS, biway.StateFailed}, // RCS forced on a device without it
		} {
			ans, err := c.Submit(ctx, biway.Submission{To: tc.to, Canal: tc.canal, Texte: "Bonjour", Reference: "evt_" + string(rune('a'+i))})
			require.NoError(t, err)
			want[ans.MessageID] = tc.want
		}
		require.Equal(t, 3*(4+3+3+3+3), sim.Pending())
		require.NoError(t, sim.Flush(ctx))
		require.Zero(t, sim.Pending())
		require.Equal(t, 3*16, sim.Posted())

		got, calls := st.snapshot()
		require.Equal(t, want, got, "seed %d", seed)
		require.Equal(t, 3*16, calls)
		st.mu.Lock()
		for id, s := range want {
			if s == biway.StateFailed {
				require.NotEmpty(t, st.reasons[id], "a failure carries its reason")
			}
			require.NotEmpty(t, st.refs[id])
		}
		st.mu.Unlock()
	}
}

func TestEntityStates(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{Duplicates: 2})
	c := newClient(t, sim)
	st := newStore()
	wire(t, sim, c, st)
	ctx := t.Context()

	co, err := c.CreateCompany(ctx, biway.Company{Nom: "Formations du Sud", Siret: "12345678901234"})
	require.NoError(t, err)
	acc, err := c.CreateAccount(ctx, biway.Account{Etablissement: co.ID, Nom: "Durand", Email: "d@example.com"})
	require.NoError(t, err)
	ag, err := c.CreateAgent(ctx, biway.Agent{Nom: "Accueil"})
	require.NoError(t, err)
	require.NoError(t, sim.Flush(ctx))

	sim.SetEntityState(biway.TypeAccountState, acc.ID, "suspended")
	require.NoError(t, sim.Flush(ctx))

	st.mu.Lock()
	defer st.mu.Unlock()
	require.Equal(t, map[string]biway.EntityEtat{
		biway.TypeCompanyState + "/" + co.ID:  biway.EtatActive,
		biway.TypeAccountState + "/" + acc.ID: biway.EtatSuspended,
		biway.TypeAgentState + "/" + ag.ID:    biway.EtatActive,
	}, st.entities)
}

func TestChatTokenReadReport(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	st := newStore()
	wire(t, sim, c, st)
	ctx := t.Context()
	ag, err := c.CreateAgent(ctx, biway.Agent{Nom: "Accueil"})
	require.NoError(t, err)
	tok, err := c.ChatbotToken(ctx, biway.ChatToken{Agent: ag.ID, Reference: "evt_chat"})
	require.NoError(t, err)
	require.NoError(t, sim.UseToken(tok.Jeton))
	require.NoError(t, sim.Flush(ctx))
	got, _ := st.snapshot()
	require.Equal(t, biway.StateRead, got[tok.Jeton])
}

// TestCallbacksKeptUntilAccepted: a callback our side answers 503 to stays pending and goes
// again on the next flush.
func TestCallbacksKeptUntilAccepted(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	ctx := t.Context()
	_, err := c.Submit(ctx, biway.Submission{To: smsNumber, Texte: "x", Reference: "evt_k"})
	require.NoError(t, err)
	require.ErrorIs(t, sim.Flush(ctx), biwaysim.ErrNoCallback)

	st := newStore()
	st.err = errors.New("store down")
	wire(t, sim, c, st)
	require.Error(t, sim.Flush(ctx))
	require.Equal(t, 3, sim.Pending())

	st.mu.Lock()
	st.err = nil
	st.mu.Unlock()
	require.NoError(t, sim.Flush(ctx))
	require.Zero(t, sim.Pending())
	got, _ := st.snapshot()
	require.Len(t, got, 1)
	for _, s := range got {
		require.Equal(t, biway.StateDelivered, s)
	}
}

// TestCallbacksOnInterval: the sandbox mode posts callbacks in the background.
func TestCallbacksOnInterval(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{Interval: 10 * time.Millisecond, Delay: 20 * time.Millisecond, Shuffle: true})
	c := newClient(t, sim)
	st := newStore()
	wire(t, sim, c, st)
	ans, err := c.Submit(t.Context(), biway.Submission{To: rcsNumber, Texte: "x", Reference: "evt_i"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, _ := st.snapshot()
		return got[ans.MessageID] == biway.StateRead && sim.Pending() == 0
	}, 5*time.Second, 10*time.Millisecond)
}
