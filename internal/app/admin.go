package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/internal/store"
)

// adminHandler serves /metrics, the probes, and the admin API the CLI's dlq and endpoints
// commands call: the embedded broker opens no port, so operators go through the daemon.
func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{
		// A collector that cannot read its source (the store, the broker) drops its own series,
		// counted in promhttp_metric_handler_errors_total, not the whole page.
		Registry: a.Registry, ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		for name, ping := range map[string]func(context.Context) error{"store": a.Store.Ping, "transport": a.Broker.Ping} {
			if err := ping(ctx); err != nil {
				httpapi.WriteError(w, http.StatusServiceUnavailable, name+" not ready: "+err.Error())
				return
			}
		}
		select {
		case <-a.Router.Running():
		default:
			httpapi.WriteError(w, http.StatusServiceUnavailable, "router not running")
			return
		}
		if low, why := a.Guard.Low(); low {
			httpapi.WriteError(w, http.StatusServiceUnavailable, why)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /admin/dlq", func(w http.ResponseWriter, r *http.Request) {
		dls, err := a.Store.DeadLetters(r.Context(), r.URL.Query().Get("pipeline"), r.URL.Query().Get("all") == "")
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out := make([]DeadLetterView, 0, len(dls))
		for _, d := range dls {
			out = append(out, viewOf(d))
		}
		httpapi.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /admin/dlq/retry", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID       int64  `json:"id"`
			All      bool   `json:"all"`
			Pipeline string `json:"pipeline"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || (req.ID == 0 && !req.All) {
			httpapi.WriteError(w, http.StatusBadRequest, `want {"id": <dead letter id>} or {"all": true}`)
			return
		}
		if req.All {
			n, err := a.DLQ.RetryAll(r.Context(), req.Pipeline)
			if err != nil {
				httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
				return
			}
			httpapi.WriteJSON(w, http.StatusOK, map[string]int{"retried": n})
			return
		}
		if err := a.DLQ.Retry(r.Context(), req.ID); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, store.ErrNotFound) {
				status = http.StatusNotFound
			}
			httpapi.WriteError(w, status, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]int{"retried": 1})
	})
	mux.HandleFunc("GET /admin/stages", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, a.Backlogs.Read(r.Context()))
	})
	mux.HandleFunc("GET /admin/endpoints", func(w http.ResponseWriter, r *http.Request) {
		views, err := a.endpointViews(r.Context())
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, views)
	})
	mux.HandleFunc("POST /admin/endpoints/enable", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Endpoint string `json:"endpoint"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Endpoint == "" {
			httpapi.WriteError(w, http.StatusBadRequest, `want {"endpoint": "<endpoint id>"}`)
			return
		}
		if err := a.Store.EnableEndpoint(r.Context(), req.Endpoint); err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"enabled": req.Endpoint})
	})
	mux.HandleFunc("GET /admin/modules", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, ModuleStates(a.Cfg, a.Modules))
	})
	// Routes the modules added (/admin/billing, …).
	mux.Handle("/admin/", a.adminMux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "no such endpoint")
	})
	if a.Cfg.AdminToken == "" {
		return mux
	}
	// The admin API re-drives dead letters and uploads billing files: with a token set, only its
	// holder may call it. Metrics and probes stay open for scrapers and orchestrators.
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: a.Cfg.AdminToken}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/admin/") && !auth.Check(r) {
			httpapi.WriteError(w, http.StatusUnauthorized, "admin API: missing or wrong bearer token (PASSERELLE_ADMIN_TOKEN)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// EndpointView is one line of `passerelle endpoints list`: an endpoint disabled after a 410, or
// one that still has held events waiting for their redelivery.
type EndpointView struct {
	Endpoint string `json:"endpoint"`
	Disabled bool   `json:"disabled"`
	Reason   string `json:"reason,omitempty"`
	// Held counts the events waiting for this endpoint while it is (or was) disabled.
	Held int `json:"held"`
}

func (a *App) endpointViews(ctx context.Context) ([]EndpointView, error) {
	off, err := a.Store.DisabledEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	held, err := a.Store.HeldEvents(ctx)
	if err != nil {
		return nil, err
	}
	views := make([]EndpointView, 0, len(off)+len(held))
	for id, reason := range off {
		views = append(views, EndpointView{Endpoint: id, Disabled: true, Reason: reason, Held: held[id]})
	}
	for id, n := range held {
		if _, ok := off[id]; !ok {
			views = append(views, EndpointView{Endpoint: id, Held: n})
		}
	}
	slices.SortFunc(views, func(a, b EndpointView) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return views, nil
}

// heldCollector reports, at scrape time, the events held for each disabled endpoint.
type heldCollector struct {
	store *store.Store
	desc  *prometheus.Desc
}

func newHeldCollector(s *store.Store) prometheus.Collector {
	return &heldCollector{store: s, desc: prometheus.NewDesc("passerelle_endpoint_held_events",
		"Events held in the broker for a disabled endpoint, delivered once it is enabled again, by endpoint.", []string{"endpoint"}, nil)}
}

func (c *heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *heldCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	held, err := c.store.HeldEvents(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for id, n := range held {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), id)
	}
}

// ModuleState is one line of check-config and of GET /admin/modules.
type ModuleState struct {
	Name string `json:"name"`
	On   bool   `json:"on"`
	Why  string `json:"why"`
}

// ModuleStates says which modules the configuration turns on, and why.
func ModuleStates(cfg config.Config, ms []modules.Module) []ModuleState {
	out := make([]ModuleState, 0, len(ms))
	for _, m := range ms {
		on, why := m.Enabled(cfg)
		out = append(out, ModuleState{Name: m.Name(), On: on, Why: why})
	}
	return out
}

// DeadLetterView is one dead letter as the admin API shows it: no payload, which holds personal data.
type DeadLetterView struct {
	ID        int64      `json:"id"`
	Pipeline  string     `json:"pipeline"`
	Topic     string     `json:"topic"`
	EventID   string     `json:"event_id"`
	Error     string     `json:"error"`
	CreatedAt time.Time  `json:"created_at"`
	RetriedAt *time.Time `json:"retried_at,omitempty"`
}

func viewOf(d store.DeadLetter) DeadLetterView {
	return DeadLetterView{ID: d.ID, Pipeline: d.Pipeline, Topic: d.Topic, EventID: d.EventID, Error: d.Error, CreatedAt: d.CreatedAt, RetriedAt: d.RetriedAt}
}

// deadLetterCollector reports the dead letters not yet retried, per pipeline, at scrape time.
type deadLetterCollector struct {
	store     *store.Store
	pipelines []string
	desc      *prometheus.Desc
}

func newDeadLetterCollector(s *store.Store, pipelines []string) prometheus.Collector {
	return &deadLetterCollector{store: s, pipelines: pipelines, desc: prometheus.NewDesc("passerelle_dead_letters",
		"Dead letters waiting for an operator (not yet retried), by pipeline.", []string{"pipeline"}, nil)}
}

func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	depth, err := c.store.PendingDeadLetters(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, p := range c.pipelines {
		if _, ok := depth[p]; !ok {
			depth[p] = 0
		}
	}
	for p, n := range depth {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), p)
	}
}
