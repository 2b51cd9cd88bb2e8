package httpapi_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/httpapi"
)

func TestParseAuthScheme(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    httpapi.AuthScheme
		wantErr bool
	}{
		{in: "bearer", want: httpapi.AuthBearer},
		{in: " Bearer ", want: httpapi.AuthBearer},
		{in: "api-key", want: httpapi.AuthAPIKey},
		{in: "X-Token", want: httpapi.AuthXToken},
		{in: "token", want: httpapi.AuthToken},
		{in: "", wantErr: true},
		{in: "basic", wantErr: true},
		{in: "apikey", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := httpapi.ParseAuthScheme(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTokenAuthCheck(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-T0ken"
	tests := []struct {
		name    string
		scheme  httpapi.AuthScheme
		token   string // configured
		headers map[string]string
		want    bool
	}{
		{"bearer", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer " + secret}, true},
		{"bearer lower-case scheme", httpapi.AuthBearer, secret, map[string]string{"Authorization": "bearer " + secret}, true},
		{"bearer upper-case scheme", httpapi.AuthBearer, secret, map[string]string{"Authorization": "BEARER " + secret}, true},
		{"bearer extra spaces", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer   " + secret + " "}, true},
		{"bearer token case matters", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer " + strings.ToUpper(secret)}, false},
		{"bearer wrong token", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer nope"}, false},
		{"bearer prefix of token", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer " + secret[:4]}, false},
		{"bearer missing header", httpapi.AuthBearer, secret, nil, false},
		{"bearer no credentials", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Bearer"}, false},
		{"bearer sent as token scheme", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Token " + secret}, false},
		{"bearer sent as api key", httpapi.AuthBearer, secret, map[string]string{"X-API-Key": secret}, false},
		{"bearer sent as basic", httpapi.AuthBearer, secret, map[string]string{"Authorization": "Basic " + secret}, false},

		{"api-key", httpapi.AuthAPIKey, secret, map[string]string{"X-API-Key": secret}, true},
		{"api-key header name case", httpapi.AuthAPIKey, secret, map[string]string{"x-api-key": secret}, true},
		{"api-key wrong token", httpapi.AuthAPIKey, secret, map[string]string{"X-API-Key": "nope"}, false},
		{"api-key missing header", httpapi.AuthAPIKey, secret, nil, false},
		{"api-key sent as bearer", httpapi.AuthAPIKey, secret, map[string]string{"Authorization": "Bearer " + secret}, false},
		{"api-key sent as x-token", httpapi.AuthAPIKey, secret, map[string]string{"X-Token": secret}, false},

		{"x-token", httpapi.AuthXToken, secret, map[string]string{"X-Token": secret}, true},
		{"x-token wrong token", httpapi.AuthXToken, secret, map[string]string{"X-Token": "nope"}, false},
		{"x-token missing header", httpapi.AuthXToken, secret, nil, false},
		{"x-token sent as api key", httpapi.AuthXToken, secret, map[string]string{"X-API-Key": secret}, false},

		{"token bare", httpapi.AuthToken, secret, map[string]string{"Authorization": "Token " + secret}, true},
		{"token quoted param", httpapi.AuthToken, secret, map[string]string{"Authorization": `Token token="` + secret + `"`}, true},
		{"token unquoted param", httpapi.AuthToken, secret, map[string]string{"Authorization": "Token token=" + secret}, true},
		{"token param with more params", httpapi.AuthToken, secret, map[string]string{"Authorization": `Token token="` + secret + `", nonce="x"`}, true},
		{"token lower-case scheme", httpapi.AuthToken, secret, map[string]string{"Authorization": `token token="` + secret + `"`}, true},
		{"token wrong token", httpapi.AuthToken, secret, map[string]string{"Authorization": `Token token="nope"`}, false},
		{"token unterminated quote", httpapi.AuthToken, secret, map[string]string{"Authorization": `Token token="` + secret}, false},
		{"token missing header", httpapi.AuthToken, secret, nil, false},
		{"token sent as bearer", httpapi.AuthToken, secret, map[string]string{"Authorization": "Bearer " + secret}, false},

		{"empty configured token refuses empty header", httpapi.AuthAPIKey, "", map[string]string{"X-API-Key": ""}, false},
		{"empty configured token refuses bearer", httpapi.AuthBearer, "", map[string]string{"Authorization": "Bearer "}, false},
		{"unknown scheme refuses", httpapi.AuthScheme("basic"), secret, map[string]string{"Authorization": "Basic " + secret}, false},
		{"zero scheme refuses", "", secret, map[string]string{"Authorization": "Bearer " + secret}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got := httpapi.TokenAuth{Scheme: tt.scheme, Token: tt.token}.Check(r)
			require.Equal(t, tt.want, got, "headers %v", tt.headers)
		})
	}
}

// SetHeader must produce what Check accepts, for every scheme: simulators rely on it.
func TestTokenAuthSetHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []httpapi.AuthScheme{httpapi.AuthBearer, httpapi.AuthAPIKey, httpapi.AuthXToken, httpapi.AuthToken} {
		t.Run(string(s), func(t *testing.T) {
			t.Parallel()
			a := httpapi.TokenAuth{Scheme: s, Token: "abc123"}
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			a.SetHeader(r.Header)
			require.True(t, a.Check(r), "headers %v", r.Header)
			wrong := httpapi.TokenAuth{Scheme: s, Token: "abc124"}
			require.False(t, wrong.Check(r))
		})
	}
}

func TestTokenAuthNeverPrintsToken(t *testing.T) {
	t.Parallel()
	a := httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: "very-secret"}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "auth", a)
	fmt.Fprintf(&b, "%v %s %+v", a, a, a)
	require.NotContains(t, b.String(), "very-secret")
	require.Contains(t, b.String(), "bearer")
}
