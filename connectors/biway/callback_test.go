package biway

import (
	"errors"
	"testing"
	"time"
)

func TestAdvance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		current, next State
		want          bool
	}{
		{"", StateAccepted, true},
		{"", StateRead, true}, // the first report to arrive may be a late one
		{"", StateFailed, true},
		{"", "bogus", false},
		{StateAccepted, StateSent, true},
		{StateAccepted, StateRead, true},
		{StateSent, StateDelivered, true},
		{StateDelivered, StateRead, true},
		{StateAccepted, StateAccepted, false}, // a duplicate changes nothing
		{StateRead, StateRead, false},
		{StateSent, StateAccepted, false}, // out of order
		{StateRead, StateDelivered, false},
		{StateRead, StateSent, false},
		{StateAccepted, StateFailed, true},
		{StateSent, StateFailed, true},
		{StateDelivered, StateFailed, false}, // the handset confirmed it: a late failure is stale
		{StateRead, StateFailed, false},
		{StateFailed, StateAccepted, false}, // failed is final
		{StateFailed, StateRead, false},
		{StateFailed, StateFailed, false},
		{StateSent, "", false},
	}
	for _, tt := range tests {
		if got := Advance(tt.current, tt.next); got != tt.want {
			t.Errorf("Advance(%q, %q) = %v, want %v", tt.current, tt.next, got, tt.want)
		}
	}
}

// TestAdvanceConverges: whatever order a chain's reports arrive in, with duplicates, keeping
// only the ones Advance accepts ends at the chain's last state.
func TestAdvanceConverges(t *testing.T) {
	t.Parallel()
	chains := [][]State{
		{StateAccepted, StateSent, StateDelivered, StateRead},
		{StateAccepted, StateSent, StateDelivered},
		{StateAccepted, StateSent, StateFailed},
	}
	for _, chain := range chains {
		permute(append(append([]State{}, chain...), chain...), func(order []State) {
			var cur State
			for _, s := range order {
				if Advance(cur, s) {
					cur = s
				}
			}
			if want := chain[len(chain)-1]; cur != want {
				t.Fatalf("order %v ends at %q, want %q", order, cur, want)
			}
		})
	}
}

// permute calls f with every permutation of xs (Heap's algorithm).
func permute(xs []State, f func([]State)) {
	var gen func(int)
	gen = func(k int) {
		if k == 1 {
			f(xs)
			return
		}
		for i := 0; i < k; i++ {
			gen(k - 1)
			if k%2 == 0 {
				xs[i], xs[k-1] = xs[k-1], xs[i]
			} else {
				xs[0], xs[k-1] = xs[k-1], xs[0]
			}
		}
	}
	gen(len(xs))
}

func TestDecodeCallback(t *testing.T) {
	t.Parallel()
	paris, _ := time.LoadLocation("Europe/Paris")
	date := time.Date(2026, 3, 14, 9, 30, 0, 0, paris)
	tests := []struct {
		name    string
		body    string
		want    Callback
		wantErr bool
	}{
		{name: "report", body: `{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"evt_1","etat":"delivered","raison":"","date":"2026-03-14 09:30:00"}`,
			want: Callback{Type: TypeMessengerReport, Report: &Report{MessageID: "m_1", Reference: "evt_1", Etat: StateDelivered, Date: date}}},
		{name: "failed report", body: `{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"evt_1","etat":"failed","raison":"numero injoignable","date":"2026-03-14 09:30:00"}`,
			want: Callback{Type: TypeMessengerReport, Report: &Report{MessageID: "m_1", Reference: "evt_1", Etat: StateFailed, Raison: "numero injoignable", Date: date}}},
		{name: "account", body: `{"type":"ACCOUNT_STATE","id":"acc_1","etat":"active","date":"2026-03-14 09:30:00"}`,
			want: Callback{Type: TypeAccountState, Entity: &EntityState{Type: TypeAccountState, ID: "acc_1", Etat: EtatActive, Date: date}}},
		{name: "company", body: `{"type":"COMPANY_STATE","id":"co_1","etat":"refused","date":"2026-03-14 09:30:00"}`,
			want: Callback{Type: TypeCompanyState, Entity: &EntityState{Type: TypeCompanyState, ID: "co_1", Etat: EtatRefused, Date: date}}},
		{name: "agent", body: `{"type":"AGENT_STATE","id":"ag_1","etat":"suspended","date":"2026-03-14 09:30:00"}`,
			want: Callback{Type: TypeAgentState, Entity: &EntityState{Type: TypeAgentState, ID: "ag_1", Etat: EtatSuspended, Date: date}}},
		{name: "unknown state", body: `{"type":"MESSENGER_REPORT","message_id":"m_1","etat":"lost","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "entity state on a report", body: `{"type":"MESSENGER_REPORT","message_id":"m_1","etat":"active","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "report state on an entity", body: `{"type":"AGENT_STATE","id":"ag_1","etat":"read","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "no message id", body: `{"type":"MESSENGER_REPORT","etat":"sent","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "no entity id", body: `{"type":"COMPANY_STATE","etat":"active","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "unknown type", body: `{"type":"INVOICE","id":"x","etat":"active","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "no type", body: `{"id":"x","etat":"active","date":"2026-03-14 09:30:00"}`, wantErr: true},
		{name: "no date", body: `{"type":"AGENT_STATE","id":"ag_1","etat":"active"}`, wantErr: true},
		{name: "bad date", body: `{"type":"AGENT_STATE","id":"ag_1","etat":"active","date":"14/03/2026"}`, wantErr: true},
		{name: "not JSON", body: `etat=sent`, wantErr: true},
		{name: "array", body: `[]`, wantErr: true},
		{name: "trailing data", body: `{"type":"AGENT_STATE","id":"ag_1","etat":"active","date":"2026-03-14 09:30:00"} {}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeCallback([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidCallback) {
					t.Fatalf("DecodeCallback error = %v, want one wrapping ErrInvalidCallback", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeCallback: %v", err)
			}
			if got.Type != tt.want.Type || (got.Report == nil) != (tt.want.Report == nil) || (got.Entity == nil) != (tt.want.Entity == nil) {
				t.Fatalf("DecodeCallback = %+v, want %+v", got, tt.want)
			}
			if r := got.Report; r != nil {
				w := tt.want.Report
				if r.MessageID != w.MessageID || r.Reference != w.Reference || r.Etat != w.Etat || r.Raison != w.Raison || !r.Date.Equal(w.Date) {
					t.Errorf("report = %+v, want %+v", *r, *w)
				}
			}
			if e := got.Entity; e != nil {
				w := tt.want.Entity
				if e.Type != w.Type || e.ID != w.ID || e.Etat != w.Etat || !e.Date.Equal(w.Date) {
					t.Errorf("entity = %+v, want %+v", *e, *w)
				}
			}
		})
	}
}

func FuzzDecodeCallback(f *testing.F) {
	for _, s := range []string{
		`{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"evt_1","etat":"read","raison":"","date":"2026-03-14 09:30:00"}`,
		`{"type":"ACCOUNT_STATE","id":"acc_1","etat":"active","date":"2026-10-25 02:30:00"}`,
		`{"type":"AGENT_STATE","id":"","etat":"x","date":null}`,
		`{}`, `null`, `[`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := DecodeCallback(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidCallback) {
				t.Fatalf("error %v does not wrap ErrInvalidCallback", err)
			}
			return
		}
		switch {
		case cb.Report != nil && cb.Entity == nil:
			if cb.Type != TypeMessengerReport || !cb.Report.Etat.Valid() || cb.Report.MessageID == "" || cb.Report.Date.IsZero() {
				t.Fatalf("accepted an invalid report: %+v", *cb.Report)
			}
		case cb.Entity != nil && cb.Report == nil:
			if cb.Entity.Type != cb.Type || !cb.Entity.Etat.Valid() || cb.Entity.ID == "" || cb.Entity.Date.IsZero() {
				t.Fatalf("accepted an invalid entity state: %+v", *cb.Entity)
			}
		default:
			t.Fatalf("callback %+v has not exactly one of Report and Entity", cb)
		}
	})
}
