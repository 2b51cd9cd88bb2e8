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
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/diskguard"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// maxHandlerTimeout bounds one handler run; a run also times out at 3/4 of the consumers' AckWait
// (PASSERELLE_ACK_WAIT), so a slow run is never redelivered while it still runs.
const maxHandlerTimeout = 90 * time.Second

// Modules is the list of modules, written once: each partner or cross-cutting flow. Order is
// build order: crm first, since the others deliver through the sink it builds; shopapp before
// billing, which prices from its catalogue.
func Modules() []modules.Module {
	return []modules.Module{
		modules.CRM{},
		modules.Leads{},
		&modules.ShopApp{},
		&modules.Simplebo{},
		&modules.Billing{},
		&modules.Ecolix{},
		&modules.Biway{},
		&modules.Replay{}, // after the lead sources: it journals what they decode
	}
}

// Parts are the modules' sections of the configuration.
func Parts(ms []modules.Module) []config.Part {
	var parts []config.Part
	for _, m := range ms {
		if s := m.Config(); s != nil {
			parts = append(parts, config.Part{Name: m.Name(), Section: s})
		}
	}
	return parts
}

// LoadConfig reads the core configuration and every module's section from environ.
func LoadConfig(ctx context.Context, environ []string) (config.Config, error) {
	return config.LoadFrom(ctx, environ, Parts(Modules())...)
}

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
	// Guard says when the disk or the store cannot take work.
	Guard *diskguard.Guard
	// Modules are the built modules, in list order.
	Modules []modules.Module

	background []func(ctx context.Context)

	httpLn, adminLn net.Listener
	httpSrv         *http.Server
	adminSrv        *http.Server
	adminMux        *http.ServeMux
	closers         []func() error
}

// Module returns the built module of type T (a pointer type from package modules), or the zero
// value when the list has none.
func Module[T modules.Module](a *App) T {
	for _, m := range a.Modules {
		if t, ok := m.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// New builds the daemon from cfg (loaded with LoadConfig): nothing runs until Run.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{Cfg: cfg, Log: log, Registry: prometheus.NewRegistry(), Modules: Modules()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	now := time.Now

	if a.Store, err = store.Open(ctx, cfg.StoreLocation()); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	a.closers = append(a.closers, a.Store.Close)

	if a.Broker, err = broker.Open(ctx, broker.Config{
		URL: cfg.NATS.URL, DataDir: cfg.DataDir, Listen: cfg.NATS.Listen, SyncInterval: cfg.NATS.SyncInterval,
		Stream: cfg.NATS.Stream, Prefix: cfg.NATS.SubjectPrefix, MaxAge: cfg.NATS.MaxAge, MaxBytes: cfg.NATS.MaxBytes,
		DuplicateWindow: cfg.NATS.DuplicateWindow, Replicas: cfg.NATS.Replicas,
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
	floor, err := diskguard.ParseFloor(cfg.MinFreeDisk)
	if err != nil {
		return nil, fmt.Errorf("PASSERELLE_MIN_FREE_DISK: %w", err)
	}
	a.Guard = diskguard.New(cfg.DataDir, floor, a.Registry)
	a.Guard.SetProbe(func(ctx context.Context) error {
		return a.Store.PutState(ctx, "health", "probe", []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	a.Guard.Check()
	a.background = append(a.background, func(ctx context.Context) { a.Guard.Run(ctx, 2*time.Second) })
	metrics := pipelines.NewMetrics(a.Registry)
	// Watermill narrates every subscriber start and stop at info: keep that for debug.
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With("component", "watermill"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	// A stage's prefetched messages wait behind a held one, their AckWait running: a hold must
	// end well before it, or they would be redelivered while queued.
	yield := pipelines.NewYield(min(cfg.StageYield, ackWait/4), a.Registry)
	if a.Router, err = pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: handlerTimeout, CloseTimeout: cfg.ShutdownTimeout, Yield: yield, Pause: a.Guard.Wait}, a.Pub, metrics, wlog); err != nil {
		return nil, err
	}
	a.Backlogs = pipelines.NewBacklogs(a.Broker, now)
	a.Registry.MustRegister(a.Backlogs)
	disabled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "passerelle", Name: "endpoints_disabled_total",
		Help: "Sink endpoints disabled after answering 410 Gone, by sink.",
	}, []string{"sink"})
	disabled.WithLabelValues("crm") // from zero, so increase() sees the first disable
	names := make([]string, 0, len(a.Modules))
	for _, m := range a.Modules {
		names = append(names, m.Name())
	}
	a.Registry.MustRegister(disabled, newDeadLetterCollector(a.Store, names), newHeldCollector(a.Store))

	a.adminMux = http.NewServeMux()
	webhooks := http.NewServeMux()
	env := &modules.Env{
		Cfg: cfg, Log: log, Registry: a.Registry, Store: a.Store, Broker: a.Broker, Pub: a.Pub,
		Wiring: pipelines.Wiring{
			Router: a.Router, Pub: a.Pub, Metrics: metrics, Backlogs: a.Backlogs, Yield: yield, Log: log, Now: now,
			Subscribe: func(ctx context.Context, durable, topic string, opts pipelines.SubscribeOptions) (message.Subscriber, error) {
				cc := broker.ConsumerConfig{
					AckWait: ackWait, NakDelay: broker.ExpDelay{Min: cfg.RedeliveryMin, Max: cfg.RedeliveryMax},
					Subscribers: opts.Subscribers, StartAfter: opts.StartAfter,
				}
				if opts.Ordered {
					cc.MaxAckPending = 1
				}
				return a.Broker.NewSubscriber(ctx, durable, topic, cc, wlog)
			},
		},
		Webhooks: webhooks, WebhookMetrics: httpapi.NewWebhookMetrics(a.Registry), Admin: a.adminMux,
		HTTPMetrics: httpclient.NewMetrics(a.Registry), DeliveryMetrics: delivery.NewMetrics(a.Registry), Yield: yield, Stages: metrics, DisabledEndpoints: disabled,
		Now: now, LeadSources: pipelines.LeadSources{}, Guard: a.Guard,
	}
	// Closers registered by modules run before the store and the broker close (a.close runs in
	// reverse order).
	a.closers = append(a.closers, func() error {
		var errs []error
		cs := env.Closers()
		for i := len(cs) - 1; i >= 0; i-- {
			errs = append(errs, cs[i]())
		}
		return errors.Join(errs...)
	})
	for _, m := range a.Modules {
		if err := m.Build(ctx, env); err != nil {
			return nil, fmt.Errorf("module %s: %w", m.Name(), err)
		}
	}
	a.background = append(a.background, env.Background()...)
	a.DLQ = &pipelines.DeadLetters{Store: a.Store, Deliveries: a.Store, Pub: a.Pub, Now: now}

	webhooks.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "no such endpoint")
	})
	a.httpSrv = &http.Server{Handler: a.refuseWhenLow(webhooks), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
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

// refuseWhenLow answers 503 at once, without taking the record, while the disk or the store cannot
// take work: the partner sends it again later, and nothing answered 200 can be lost for lack of space.
func (a *App) refuseWhenLow(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if low, why := a.Guard.Low(); low && r.Method == http.MethodPost {
			w.Header().Set("Retry-After", "60")
			httpapi.WriteError(w, http.StatusServiceUnavailable, "not taken, send it again later: "+why)
			return
		}
		next.ServeHTTP(w, r)
	})
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
	a.Log.Info("shutting down", "timeout", a.Cfg.ShutdownTimeout.String())
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

// Check runs the modules' cross-checks, and, for a daemon (serve), refuses a configuration that
// enables no source: it would answer 404 to every webhook and poll nothing.
func Check(cfg config.Config, serving bool) error {
	var errs []error
	var sources []string
	anySource := false
	for _, m := range Modules() {
		if c, ok := m.(modules.Checker); ok {
			errs = append(errs, c.Check(cfg))
		}
		if s, ok := m.(modules.Source); ok {
			sources = append(sources, s.Source())
			if on, _ := m.Enabled(cfg); on {
				anySource = true
			}
		}
	}
	if serving && !anySource {
		errs = append(errs, fmt.Errorf("no source is enabled, so the daemon would have nothing to do: set %s", strings.Join(sources, ", or ")))
	}
	return errors.Join(errs...)
}

// Vars lists every variable the daemon reads: the core's and every module's.
func Vars() []config.Var { return config.Vars(Parts(Modules())...) }
