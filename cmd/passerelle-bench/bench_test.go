package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/stdwebhook"
)

func TestVerdict(t *testing.T) {
	t.Parallel()
	miss := goal{what: "delivered at 50ms / ceiling", got: "0.74", want: "≥ 0.80"}
	for _, tc := range []struct {
		name       string
		errored    []string
		missed     []goal
		reportOnly bool
		want       int
		says       string
	}{
		{"every goal met", nil, nil, false, 0, "every goal met"},
		{"a MISS fails", nil, []goal{miss}, false, 1, "MISS: delivered at 50ms / ceiling: 0.74 (goal ≥ 0.80)"},
		{"a MISS only reported", nil, []goal{miss}, true, 0, "exit 0 (-report-only)"},
		{"an error fails even when only reporting", []string{"delivery"}, nil, true, 1, "could not run: delivery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			if got := verdict(&out, tc.errored, tc.missed, tc.reportOnly); got != tc.want {
				t.Errorf("exit status %d, want %d; printed:\n%s", got, tc.want, out.String())
			}
			if !strings.Contains(out.String(), tc.says) {
				t.Errorf("printed %q, want it to say %q", out.String(), tc.says)
			}
		})
	}
}

func TestReportMissed(t *testing.T) {
	t.Parallel()
	var r report
	r.check("a", "1", "1", true)
	r.check("b", "2", "1", false)
	got := r.missed()
	if len(got) != 1 || got[0].what != "b" {
		t.Errorf("missed = %+v, want only b", got)
	}
}

// The receiver counts what the delivery goals are checked on: requests in flight, distinct
// webhook-ids, duplicates, and it signals once every wanted id arrived.
func TestReceiverCounts(t *testing.T) {
	t.Parallel()
	const delay = 30 * time.Millisecond
	recv, err := startReceiver(delay, 3, 2)
	require.NoError(t, err)
	t.Cleanup(recv.close)

	post := func(id string) error {
		req, err := http.NewRequest(http.MethodPost, recv.url, strings.NewReader("{}"))
		if err != nil {
			return err
		}
		req.Header.Set(stdwebhook.HeaderID, id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	// Two at once, then a re-send of one of them, then the third id.
	errs := make(chan error, 2)
	go func() { errs <- post("a") }()
	go func() { errs <- post("b") }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	require.NoError(t, post("a"))
	select {
	case <-recv.all:
		t.Fatal("all signalled before the third distinct id")
	default:
	}
	require.NoError(t, post("c"))
	select {
	case <-recv.all:
	case <-time.After(5 * time.Second):
		t.Fatal("all not signalled after three distinct ids")
	}

	s := recv.stats()
	require.Equal(t, 4, s.requests, "requests")
	require.Equal(t, 3, s.distinct, "distinct ids")
	require.Equal(t, 1, s.duplicates, "duplicates")
	require.LessOrEqual(t, s.maxInFlight, 2, "max in flight")
	require.GreaterOrEqual(t, s.meanLatency(), delay, "the receiver's time per request")
	require.GreaterOrEqual(t, s.span(), 2*delay, "first arrival to last distinct answer: at least two waits in a row")
}
