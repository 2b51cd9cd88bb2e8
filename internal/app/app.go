// Package app is passerelle's composition root: it builds the store, the transport, the pipelines,
// the webhook server and the admin server from a Config, runs them, and shuts them down in order.
// cmd/passerelle and the end-to-end tests build the daemon the same way, through New.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// maxHandlerTimeout bounds one handler run; a run also times out at 3/4 of the consumers' AckWait
// (PASSERELLE_ACK_WAIT), so a slow run is never redelivered while it still runs.
const maxHandlerTimeout = 90 * time.Second

// App is a built daemon.
type App struct {
	Cfg      config.Config
	Log      *slog.Logger
	Registry *prometheus.Registry
	Store    *store.Store
	Broker   *broker.Broker
	Pub      *broker.Publisher
	Router   *message.Router
	DLQ      *pipelines.DeadLetters
	Backlogs *pipelines.Backlogs // each stage's backlog in the broker
	ShopApp  *shopapp.Client     // nil when PASSERELLE_SHOPAPP_URL is empty
	Poller   *pipelines.ShopAppPoller
	Billing  *pipelines.Billing

	background []func(ctx context.Context)

	httpLn, adminLn net.Listener
	httpSrv         *http.Server
	adminSrv        *http.Server
	closers         []func() error
}

// New builds the daemon: nothing runs until Run.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{Cfg: cfg, Log: log, Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	now := time.Now

	if a.Store, err = store.Open(ctx, StoreDSN(cfg)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	a.closers = append(a.closers, a.Store.Close)

	if a.Broker, err = broker.Open(ctx, broker.Config{
		URL: cfg.NATS.URL, DataDir: cfg.DataDir, Listen: cfg.NATS.Listen, SyncInterval: cfg.NATS.SyncInterval,
		Stream: cfg.NATS.Stream, Prefix: cfg.NATS.SubjectPrefix, MaxAge: cfg.NATS.MaxAge, MaxBytes: cfg.NATS.MaxBytes,
		DuplicateWindow: cfg.NATS.DuplicateWindow,
	}, log, broker.NewMetrics(a.Registry)); err != nil {
		return nil, fmt.Errorf("open transport: %w", err)
	}
	a.closers = append(a.closers, a.Broker.Close)
	if a.Pub, err = a.Broker.NewPublisher(); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Pub.Close)

	ackWait := cfg.AckWait
	if ackWait <= 0 {
		ackWait = 2 * time.Minute
	}
	handlerTimeout := min(maxHandlerTimeout, ackWait*3/4)
	metrics := pipelines.NewMetrics(a.Registry)
	// Watermill narrates every subscriber start and stop at info: keep that for debug.
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With("component", "watermill"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	// Up to 64 prefetched messages (a consumer's MaxAckPending) wait behind a held one: their
	// waits must add up to well under the AckWait, or they would be redelivered while queued.
	yield := pipelines.NewYield(min(cfg.StageYield, ackWait/128), a.Registry)
	if a.Router, err = pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: handlerTimeout, CloseTimeout: cfg.ShutdownTimeout, Yield: yield}, a.Pub, metrics, wlog); err != nil {
		return nil, err
	}
	a.Backlogs = pipelines.NewBacklogs(a.Broker, now)
	a.Registry.MustRegister(a.Backlogs)
	w := pipelines.Wiring{
		Router: a.Router, Pub: a.Pub, Metrics: metrics, Backlogs: a.Backlogs, Yield: yield, Log: log, Now: now,
		Subscribe: func(ctx context.Context, durable, topic string) (message.Subscriber, error) {
			return a.Broker.NewSubscriber(ctx, durable, topic, broker.ConsumerConfig{
				AckWait: ackWait, NakDelay: broker.ExpDelay{Min: cfg.RedeliveryMin, Max: cfg.RedeliveryMax},
			}, wlog)
		},
	}
	httpMetrics := httpclient.NewMetrics(a.Registry)
	disabled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "passerelle", Name: "endpoints_disabled_total",
		Help: "Sink endpoints disabled after answering 410 Gone, by sink.",
	}, []string{"sink"})
	disabled.WithLabelValues("crm") // from zero, so increase() sees the first disable
	a.Registry.MustRegister(disabled, newDeadLetterCollector(a.Store))

	var sink *pipelines.CRMSink
	if len(cfg.CRM.URLs) > 0 {
		client, err := crm.New(crm.Config{Secret: cfg.CRM.Secret, Timeout: cfg.CRM.Timeout}, httpMetrics)
		if err != nil {
			return nil, fmt.Errorf("crm: %w", err)
		}
		format, err := crm.ParseFormat(cfg.CRM.Format)
		if err != nil {
			return nil, err
		}
		sink = &pipelines.CRMSink{
			Sender: client, Endpoints: cfg.CRM.URLs, Format: format, Store: a.Store,
			MaxAttempts: cfg.CRM.MaxAttempts, MaxAge: cfg.CRM.MaxAge, Disabled: disabled, Log: log, Now: now,
		}
	}
	if err := pipelines.AddLeads(ctx, w, pipelines.LeadsConfig{Store: a.Store, DedupeWindow: cfg.DedupeWindow, CRM: sink}); err != nil {
		return nil, err
	}
	a.DLQ = &pipelines.DeadLetters{Store: a.Store, Deliveries: a.Store, Pub: a.Pub, Now: now}

	if err := a.buildShopAppAndBilling(ctx, w, sink, httpMetrics); err != nil {
		return nil, err
	}
	// Dedupe keys older than the window can never match again: drop them so the table stays small.
	a.background = append(a.background, func(ctx context.Context) {
		pruneEvery(ctx, time.Hour, func(ctx context.Context) {
			if n, err := a.Store.PruneKeys(ctx, now().Add(-cfg.DedupeWindow)); err != nil {
				log.Warn("prune dedupe keys", "error", err)
			} else if n > 0 {
				log.Debug("pruned dedupe keys", "count", n)
			}
		})
	})

	webhooks := httpapi.NewWebhookMetrics(a.Registry)
	mux := http.NewServeMux()
	if cfg.IciFormation.Token != "" {
		scheme, err := httpapi.ParseAuthScheme(cfg.IciFormation.Auth)
		if err != nil {
			return nil, err
		}
		// Up to 256 concurrent leads share one publish. One flusher: the next batch fills while
		// the last one is acknowledged, so batches are larger and the broker does less per lead.
		batcher := broker.NewBatcher(a.Pub, pipelines.TopicLeadsReceived, 256, 1)
		a.closers = append(a.closers, func() error { batcher.Close(); return nil })
		ingest := pipelines.NewLeadIngest(batcher, metrics, yield, now)
		metrics.Init(pipelines.PipelineLeads, "ingest")
		mux.Handle("/webhooks/iciformation", webhooks.Instrument("iciformation", iciformation.NewHandler(iciformation.HandlerConfig{
			Auth: httpapi.TokenAuth{Scheme: scheme, Token: cfg.IciFormation.Token}, Logger: log.With("source", "iciformation"),
		}, ingest)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "no such endpoint")
	})
	a.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	a.adminSrv = &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen PASSERELLE_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	a.closers = append(a.closers, func() error { return ignoreClosed(a.httpLn.Close()) })
	if a.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("listen PASSERELLE_ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
	}
	a.closers = append(a.closers, func() error { return ignoreClosed(a.adminLn.Close()) })
	return a, nil
}

// HTTPAddr is where the webhooks listen (useful with port 0).
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// AdminAddr is where /metrics and the admin API listen.
func (a *App) AdminAddr() string { return a.adminLn.Addr().String() }

// Run serves until ctx is done, then shuts down within the configured timeout: stop accepting
// webhooks, let handlers finish, close the transport and the store.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(name string, srv *http.Server, ln net.Listener) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", name, err)
			}
		}()
	}
	routerCtx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRouter()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Router.Run(routerCtx); err != nil {
			errc <- fmt.Errorf("router: %w", err)
		}
	}()
	select {
	case <-a.Router.Running():
	case err := <-errc:
		a.close()
		return err
	}
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	for _, f := range a.background {
		bg.Add(1)
		go func() { defer bg.Done(); f(bgCtx) }()
	}
	serve("admin", a.adminSrv, a.adminLn)
	serve("webhook", a.httpSrv, a.httpLn)
	a.Log.Info("passerelle running", "http_addr", a.HTTPAddr(), "admin_addr", a.AdminAddr(), "transport", transportName(a.Cfg), "store", a.Store.Dialect())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.Log.Info("shutting down", "timeout", a.Cfg.ShutdownTimeout)
	stopBackground()
	bg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), a.Cfg.ShutdownTimeout)
	defer cancel()
	// Webhooks first: a request in flight finishes its publish and gets its answer.
	if err := a.httpSrv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("webhook server shutdown: %w", err))
	}
	if err := a.Router.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("router close: %w", err))
	}
	stopRouter()
	_ = a.adminSrv.Shutdown(sctx)
	a.close()
	wg.Wait()
	a.Log.Info("stopped")
	return runErr
}

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.Log.Warn("close", "error", err)
		}
	}
	a.closers = nil
}

// pruneEvery runs f now and then every interval until ctx is done.
func pruneEvery(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// StoreDSN is the configured store, SQLite under the data dir by default.
func StoreDSN(cfg config.Config) string {
	if cfg.StoreDSN != "" {
		return cfg.StoreDSN
	}
	return filepath.Join(cfg.DataDir, "passerelle.db")
}

func transportName(cfg config.Config) string {
	if cfg.NATS.URL == "" {
		return "embedded"
	}
	return "external"
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
