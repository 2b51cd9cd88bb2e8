package iciformationsim_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/httpapi"
)

const testToken = "tok-9f8e7d6c5b4a"

func TestSeedExampleIsTheDocumentedPayload(t *testing.T) {
	t.Parallel()
	var m map[string]string
	require.NoError(t, json.Unmarshal(iciformationsim.SeedExample(), &m))
	require.Len(t, m, 12)
	require.Equal(t, "après-midi", m["horaire_rappel"])

	b := iciformationsim.SeedExample()
	b[0] = 'x'
	require.Equal(t, byte('{'), iciformationsim.SeedExample()[0], "each call returns its own copy")
}

func TestRandomLead(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	formats := map[string]*regexp.Regexp{
		"national":        regexp.MustCompile(`^0[67]\d{8}$`),
		"spaced":          regexp.MustCompile(`^0\d( \d\d){4}$`),
		"dotted":          regexp.MustCompile(`^0\d(\.\d\d){4}$`),
		"+33 (0)":         regexp.MustCompile(`^\+33 \(0\)[67]( \d\d){4}$`),
		"0033":            regexp.MustCompile(`^0033[67]\d{8}$`),
		"lost zero":       regexp.MustCompile(`^[67]\d{8}$`),
		"overseas":        regexp.MustCompile(`^069[0-6]\d{6}$|^0639\d{6}$`),
		"overseas spaced": regexp.MustCompile(`^06 (9[0-6]|39)( \d\d){3}$`),
	}
	postal := regexp.MustCompile(`^\d{5}$`)
	email := regexp.MustCompile(`^[A-Za-z][a-z0-9._-]*@[a-z.]+\.(fr|com|net)$`)
	seen := map[string]int{}
	noEmail := 0
	for range 500 {
		l := iciformationsim.RandomLead(r)
		require.NotEmpty(t, l.Nom)
		require.NotEmpty(t, l.Prenom)
		require.Contains(t, []string{"M.", "Mme"}, l.Civilite)
		require.NotEmpty(t, l.Formation)
		require.Equal(t, strings.ToLower(l.Ville), l.Ville, "villes are lower-case")
		require.True(t, postal.MatchString(l.CodePostal), l.CodePostal)
		require.Equal(t, "XYZ Formations", l.Client)
		require.Equal(t, "1234", l.IDClient)
		require.NotEmpty(t, l.Tel, "the phone keeps every lead usable")
		if l.Email == "" {
			noEmail++
		} else {
			require.True(t, email.MatchString(l.Email), l.Email)
		}
		if strings.HasPrefix(l.CodePostal, "97") {
			require.NotContains(t, l.Tel, "+33", "overseas numbers are not +33")
			require.False(t, strings.HasPrefix(l.Tel, "0033"))
		}
		for name, re := range formats {
			if re.MatchString(l.Tel) {
				seen[name]++
			}
		}

		// What SendLead marshals must decode back to the same lead.
		b, err := json.Marshal(l)
		require.NoError(t, err)
		back, err := iciformation.DecodeLead(b)
		require.NoError(t, err)
		back.Raw = nil
		require.Equal(t, l, back)
	}
	for name := range formats {
		require.NotZero(t, seen[name], "phone format %q never produced", name)
	}
	require.NotZero(t, noEmail)
	require.Less(t, noEmail, 75)

	// Same seed, same leads: benchmarks and sandbox runs are reproducible.
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	require.Equal(t, iciformationsim.RandomLead(a), iciformationsim.RandomLead(b))
}

func TestSenderRunPostsUntilCancelled(t *testing.T) {
	t.Parallel()
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthAPIKey, Token: testToken}
	acc := &counter{}
	srv := newServer(t, iciformation.HandlerConfig{Auth: auth}, acc)
	s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}

	ctx, cancel := context.WithCancel(t.Context())
	var ok, failed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, time.Millisecond, rand.New(rand.NewPCG(3, 4)), func(status int, err error) {
			if err == nil && status == 200 {
				if ok.Add(1) == 5 {
					cancel()
				}
				return
			}
			failed.Add(1)
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	require.GreaterOrEqual(t, ok.Load(), int64(5))
	require.Zero(t, failed.Load())
	require.Equal(t, ok.Load(), acc.n.Load())
}

func TestSenderTransportError(t *testing.T) {
	t.Parallel()
	srv := newServer(t, iciformation.HandlerConfig{}, &counter{})
	url := srv.URL
	srv.Close()
	s := &iciformationsim.Sender{URL: url}
	status, err := s.SendLead(t.Context(), iciformationsim.RandomLead(rand.New(rand.NewPCG(1, 1))))
	require.Error(t, err)
	require.Zero(t, status)
}

// counter is an Acceptor that counts the leads it takes.
type counter struct{ n atomic.Int64 }

func (c *counter) AcceptLead(context.Context, iciformation.Lead) error {
	c.n.Add(1)
	return nil
}

// newServer starts the real handler on loopback.
func newServer(t *testing.T, cfg iciformation.HandlerConfig, acc iciformation.Acceptor) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(iciformation.NewHandler(cfg, acc))
	t.Cleanup(srv.Close)
	return srv
}
