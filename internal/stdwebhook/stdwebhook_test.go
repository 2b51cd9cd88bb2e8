package stdwebhook_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// vectors are the Standard Webhooks project's own, as listed in CONTRACTS.md.
var vectors = []struct {
	name, secret, id string
	ts               int64
	body, sig        string
}{
	{
		name:   "go library",
		secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		id:     "msg_p5jXN8AQM9LWM0D4loKWxJek",
		ts:     1614265330,
		body:   `{"test": 2432232314}`,
		sig:    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	},
	{
		name:   "rust library",
		secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
		id:     "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
		ts:     1649367553,
		body:   `{"email":"test@example.com","username":"test_user"}`,
		sig:    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
	},
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", sig)
	return h
}

// rawTS builds headers with a timestamp that need not be an integer; "" leaves it out.
func rawTS(id, ts, sig string) http.Header {
	h := headers(id, 0, sig)
	h.Del("webhook-timestamp")
	if ts != "" {
		h.Set("webhook-timestamp", ts)
	}
	return h
}

func TestSignVectors(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			got, err := stdwebhook.Sign(v.secret, v.id, time.Unix(v.ts, 0), []byte(v.body))
			require.NoError(t, err)
			require.Equal(t, v.sig, got)

			// The prefix is optional.
			got, err = stdwebhook.Sign(strings.TrimPrefix(v.secret, "whsec_"), v.id, time.Unix(v.ts, 0), []byte(v.body))
			require.NoError(t, err)
			require.Equal(t, v.sig, got)

			h, err := stdwebhook.Headers(v.secret, v.id, time.Unix(v.ts, 0), []byte(v.body))
			require.NoError(t, err)
			require.Equal(t, headers(v.id, v.ts, v.sig), h)
		})
	}
}

func TestVerifyVectors(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(v.ts, 0).Add(30 * time.Second)
			require.NoError(t, stdwebhook.Verify(v.secret, headers(v.id, v.ts, v.sig), []byte(v.body), now))
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	v := vectors[0]
	at := time.Unix(v.ts, 0)
	body := []byte(v.body)
	other, err := stdwebhook.Sign("whsec_"+base64.StdEncoding.EncodeToString([]byte("another secret")), v.id, at, body)
	require.NoError(t, err)

	tests := []struct {
		name   string
		secret string
		h      http.Header
		body   []byte
		now    time.Time
		want   error // nil: accepted
	}{
		{name: "valid", h: headers(v.id, v.ts, v.sig)},
		{name: "body tampered", h: headers(v.id, v.ts, v.sig), body: []byte(`{"test": 2432232315}`), want: stdwebhook.ErrInvalidSignature},
		{name: "body with trailing newline", h: headers(v.id, v.ts, v.sig), body: []byte(v.body + "\n"), want: stdwebhook.ErrInvalidSignature},
		{name: "id tampered", h: headers(v.id+"x", v.ts, v.sig), want: stdwebhook.ErrInvalidSignature},
		{name: "timestamp tampered", h: headers(v.id, v.ts+1, v.sig), want: stdwebhook.ErrInvalidSignature},
		{name: "wrong secret", secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", h: headers(v.id, v.ts, v.sig), want: stdwebhook.ErrInvalidSignature},
		{name: "signature without version", h: headers(v.id, v.ts, strings.TrimPrefix(v.sig, "v1,")), want: stdwebhook.ErrInvalidSignature},
		{name: "other version ignored", h: headers(v.id, v.ts, "v2,"+strings.TrimPrefix(v.sig, "v1,")), want: stdwebhook.ErrInvalidSignature},
		{name: "signature not base64", h: headers(v.id, v.ts, "v1,***"), want: stdwebhook.ErrInvalidSignature},
		{name: "one of several matches", h: headers(v.id, v.ts, other+" v1a,xyz "+v.sig)},
		{name: "unknown versions then match", h: headers(v.id, v.ts, "v1a,abc v2,def "+v.sig)},
		{name: "several, none matches", h: headers(v.id, v.ts, other+" "+other), want: stdwebhook.ErrInvalidSignature},
		{name: "missing id", h: headers("", v.ts, v.sig), want: stdwebhook.ErrMissingHeaders},
		{name: "missing signature", h: headers(v.id, v.ts, ""), want: stdwebhook.ErrMissingHeaders},
		{name: "missing timestamp", h: rawTS(v.id, "", v.sig), want: stdwebhook.ErrMissingHeaders},
		{name: "no headers", h: http.Header{}, want: stdwebhook.ErrMissingHeaders},
		{name: "timestamp not an integer", h: rawTS(v.id, "1614265330.5", v.sig), want: stdwebhook.ErrTimestamp},
		{name: "timestamp as a date", h: rawTS(v.id, at.Format(time.RFC3339), v.sig), want: stdwebhook.ErrTimestamp},
		{name: "timestamp overflowing", h: rawTS(v.id, "99999999999999999999", v.sig), want: stdwebhook.ErrTimestamp},
		{name: "timestamp at int64 max", h: headers(v.id, 1<<63-1, v.sig), want: stdwebhook.ErrTimestamp},
		{name: "timestamp at int64 min", h: headers(v.id, -1<<63, v.sig), want: stdwebhook.ErrTimestamp},
		{name: "exactly 5 minutes old", h: headers(v.id, v.ts, v.sig), now: at.Add(5 * time.Minute)},
		{name: "exactly 5 minutes ahead", h: headers(v.id, v.ts, v.sig), now: at.Add(-5 * time.Minute)},
		{name: "just over 5 minutes old", h: headers(v.id, v.ts, v.sig), now: at.Add(5*time.Minute + time.Millisecond), want: stdwebhook.ErrTimestamp},
		{name: "just over 5 minutes ahead", h: headers(v.id, v.ts, v.sig), now: at.Add(-5*time.Minute - time.Millisecond), want: stdwebhook.ErrTimestamp},
		{name: "a day old", h: headers(v.id, v.ts, v.sig), now: at.Add(24 * time.Hour), want: stdwebhook.ErrTimestamp},
		{name: "bad secret", secret: "whsec_not base64!", h: headers(v.id, v.ts, v.sig), want: stdwebhook.ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret, b, now := tt.secret, tt.body, tt.now
			if secret == "" {
				secret = v.secret
			}
			if b == nil {
				b = body
			}
			if now.IsZero() {
				now = at
			}
			err := stdwebhook.Verify(secret, tt.h, b, now)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, secret string
		ok           bool
	}{
		{"prefixed", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"bare", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"empty", "", false},
		{"prefix only", "whsec_", false},
		{"not base64", "whsec_MfKQ9r8G*YqrTwjUPD8ILPZIo2LaLaSw", false},
		{"bad padding", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := stdwebhook.CheckSecret(tt.secret)
			_, signErr := stdwebhook.Sign(tt.secret, "msg", time.Unix(1, 0), nil)
			_, hdrErr := stdwebhook.Headers(tt.secret, "msg", time.Unix(1, 0), nil)
			if tt.ok {
				require.NoError(t, err)
				require.NoError(t, signErr)
				require.NoError(t, hdrErr)
				return
			}
			require.ErrorIs(t, err, stdwebhook.ErrInvalidSecret)
			require.ErrorIs(t, signErr, stdwebhook.ErrInvalidSecret)
			require.ErrorIs(t, hdrErr, stdwebhook.ErrInvalidSecret)
		})
	}
}

func TestNewSecretRoundTrip(t *testing.T) {
	t.Parallel()
	s1, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	s2, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	require.NotEqual(t, s1, s2)
	require.True(t, strings.HasPrefix(s1, "whsec_"), s1)
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s1, "whsec_"))
	require.NoError(t, err)
	require.Len(t, k, 24)

	now := time.Now()
	body := []byte(`{"type":"lead.created"}`)
	h, err := stdwebhook.Headers(s1, "evt_1", now, body)
	require.NoError(t, err)
	require.NoError(t, stdwebhook.Verify(s1, h, body, now))
	require.ErrorIs(t, stdwebhook.Verify(s2, h, body, now), stdwebhook.ErrInvalidSignature)
}

func FuzzVerify(f *testing.F) {
	for _, v := range vectors {
		f.Add(v.id, strconv.FormatInt(v.ts, 10), v.sig, []byte(v.body))
	}
	f.Add("", "", "", []byte(nil))
	f.Add("id", "-9223372036854775808", "v1, v1,, ,v1 v1,====", []byte("x"))
	f.Add("id", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", []byte("{}"))
	secret := vectors[0].secret
	now := time.Unix(vectors[0].ts, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		err := stdwebhook.Verify(secret, h, body, now)
		if err == nil {
			// Anything accepted must carry the signature Sign computes for it.
			n, perr := strconv.ParseInt(ts, 10, 64)
			require.NoError(t, perr)
			want, serr := stdwebhook.Sign(secret, id, time.Unix(n, 0), body)
			require.NoError(t, serr)
			wantMAC, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(want, "v1,"))
			found := false
			for _, f := range strings.Fields(sig) {
				got, derr := base64.StdEncoding.DecodeString(strings.TrimPrefix(f, "v1,"))
				found = found || (strings.HasPrefix(f, "v1,") && derr == nil && string(got) == string(wantMAC))
			}
			require.True(t, found, "accepted %q without a matching v1 signature", sig)
		}
	})
}
