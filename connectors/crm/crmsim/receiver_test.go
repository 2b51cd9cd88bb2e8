package crmsim_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// post sends body to the Receiver with the given headers, bypassing the Client.
func post(t *testing.T, url string, h http.Header, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp.StatusCode
}

func TestReceiverVerifies(t *testing.T) {
	t.Parallel()
	const body = `{"a":1}`
	tests := []struct {
		name    string
		headers func(secret string) http.Header
		want    int
	}{
		{name: "valid", want: http.StatusOK, headers: func(s string) http.Header {
			h, _ := stdwebhook.Headers(s, "evt_1", time.Now(), []byte(body))
			return h
		}},
		{name: "unsigned", want: http.StatusUnauthorized, headers: func(string) http.Header { return http.Header{} }},
		{name: "other secret", want: http.StatusUnauthorized, headers: func(string) http.Header {
			h, _ := stdwebhook.Headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt_1", time.Now(), []byte(body))
			return h
		}},
		{name: "stale", want: http.StatusUnauthorized, headers: func(s string) http.Header {
			h, _ := stdwebhook.Headers(s, "evt_1", time.Now().Add(-10*time.Minute), []byte(body))
			return h
		}},
		{name: "signed for another body", want: http.StatusUnauthorized, headers: func(s string) http.Header {
			h, _ := stdwebhook.Headers(s, "evt_1", time.Now(), []byte(`{"a":2}`))
			return h
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv, secret := startReceiver(t)
			require.Equal(t, tt.want, post(t, rcv.URL()+"/any/path", tt.headers(secret), body))
			require.Equal(t, 1, rcv.Attempts())
			accepted := tt.want == http.StatusOK
			require.Len(t, rcv.Deliveries(), map[bool]int{true: 1, false: 0}[accepted])
			require.Equal(t, map[bool]int{true: 0, false: 1}[accepted], rcv.Rejected())
			log := rcv.AttemptLog()
			require.Len(t, log, 1)
			require.Equal(t, tt.want, log[0].Status)
			require.Equal(t, accepted, log[0].SignatureErr == nil)
		})
	}
}

func TestReceiverMethod(t *testing.T) {
	t.Parallel()
	rcv, _ := startReceiver(t)
	resp, err := http.Get(rcv.URL())
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, 1, rcv.Attempts())
	require.Zero(t, rcv.Rejected())
}

func TestReceiverFaultCountdown(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable, RetryAfter: "7", Remaining: 2})
	send := func(id string) int {
		h, err := stdwebhook.Headers(secret, id, time.Now(), []byte("{}"))
		require.NoError(t, err)
		return post(t, rcv.URL(), h, "{}")
	}
	require.Equal(t, 503, send("a"))
	require.Equal(t, 503, send("a"))
	require.Equal(t, 200, send("a"))
	require.Equal(t, 200, send("a"))
	require.Equal(t, 200, send("b"))
	require.Equal(t, map[string]int{"a": 2, "b": 1}, rcv.UniqueIDs())
	require.Equal(t, 5, rcv.Attempts())

	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusGone})
	for range 3 {
		require.Equal(t, 410, send("c"))
	}
	rcv.SetFault(crmsim.Fault{})
	require.Equal(t, 200, send("c"))
	require.Len(t, rcv.Deliveries(), 4)
}

func TestReceiverWaitForUnique(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	c, err := crm.New(crm.Config{Secret: secret, Timeout: 2 * time.Second, RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 20 * time.Millisecond}, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, rcv.WaitForUnique(ctx, 1), context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() { done <- rcv.WaitForUnique(t.Context(), 3) }()
	for i := range 3 {
		// The same event twice: a duplicate does not count as a new unique delivery.
		for range 2 {
			_, err := c.Send(t.Context(), rcv.URL(), "evt_"+strconv.Itoa(i), []byte("{}"))
			require.NoError(t, err)
		}
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForUnique did not return")
	}
	require.Equal(t, map[string]int{"evt_0": 2, "evt_1": 2, "evt_2": 2}, rcv.UniqueIDs())
}

func TestNewReceiverRejectsBadSecret(t *testing.T) {
	t.Parallel()
	_, err := crmsim.Start("whsec_???")
	require.ErrorIs(t, err, stdwebhook.ErrInvalidSecret)
}

func TestFaultModeString(t *testing.T) {
	t.Parallel()
	for m, want := range map[crmsim.FaultMode]string{
		crmsim.FaultNone: "none", crmsim.FaultStatus: "status", crmsim.FaultSlow: "slow", crmsim.FaultReset: "reset", 42: "FaultMode(42)",
	} {
		require.Equal(t, want, m.String())
	}
}

func startReceiver(t *testing.T) (*crmsim.Receiver, string) {
	t.Helper()
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	r, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r, secret
}
