package iciformation

import (
	"context"
	"errors"
	"log/slog"
	"mime"
	"net/http"

	"github.com/passerelle/passerelle/internal/httpapi"
)

// Acceptor takes a decoded lead and makes it durable (the leads pipeline: normalise, validate,
// publish). It returns nil only once the lead will not be lost, and an error wrapping
// [ErrInvalidLead] for a lead that no retry can fix. Its error messages are logged, and for
// invalid leads sent back to the partner: they must not carry personal data.
//
// The context is not cancelled when the partner hangs up (a lead that arrived is made durable
// regardless), so AcceptLead must return within a bound of its own: LeadIngest's is the
// broker's publish timeout.
type Acceptor interface {
	AcceptLead(ctx context.Context, l Lead) error
}

// ErrInvalidLead marks an Acceptor error as the partner's fault (HTTP 400), as opposed to ours
// (HTTP 503, worth sending again).
var ErrInvalidLead = errors.New("invalid lead")

// HandlerConfig configures [NewHandler]. Zero values take the defaults.
type HandlerConfig struct {
	// Auth is the token Ici Formation presents; an empty token refuses every request.
	Auth httpapi.TokenAuth
	// MaxBody bounds the request body; 64 KiB by default, far above a real lead.
	MaxBody int64
	// Logger receives one line per rejected request or accepted lead; discarded when nil.
	Logger *slog.Logger
}

const (
	defaultMaxBody = 64 << 10
	msgUnavailable = "lead could not be stored, retry later"
)

// NewHandler returns the HTTP endpoint Ici Formation posts leads to. It checks, in order, the
// method, the token, the content type, the body size and the JSON, then calls acc and answers
// 200 with an empty body only when acc returned nil. Errors are {"error": true, "message": …}.
func NewHandler(cfg HandlerConfig, acc Acceptor) http.Handler {
	if acc == nil {
		panic("iciformation: NewHandler needs an Acceptor")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = defaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Auth.Token == "" {
		cfg.Logger.Warn("iciformation: no token configured, every lead will be refused with 401")
	}
	return &handler{cfg: cfg, acc: acc}
}

type handler struct {
	cfg HandlerConfig
	acc Acceptor
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, http.StatusMethodNotAllowed, "method not allowed, use POST", slog.String("method", r.Method))
		return
	}
	if !h.cfg.Auth.Check(r) {
		h.reject(w, r, http.StatusUnauthorized, "missing or invalid credentials")
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		h.reject(w, r, http.StatusUnsupportedMediaType, "content type must be application/json")
		return
	}
	body, err := httpapi.ReadBody(w, r, h.cfg.MaxBody)
	if errors.Is(err, httpapi.ErrTooLarge) {
		h.reject(w, r, http.StatusRequestEntityTooLarge, "request body too large", slog.Int64("max_bytes", h.cfg.MaxBody))
		return
	}
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "could not read request body", slog.Any("err", err))
		return
	}
	lead, err := DecodeLead(body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}

	// The partner may never send this lead again: once it is here, finish making it durable
	// even if the partner hangs up. The Acceptor bounds its own wait (a timer per request here
	// cost about 1 µs, 4% of the daemon's CPU per lead under load).
	ctx := context.WithoutCancel(r.Context())
	err = h.acc.AcceptLead(ctx, lead)
	switch {
	case err == nil:
		// Checked first: the hot path builds no log record (nor boxes the lead) when info is off.
		if h.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
			h.log(r).Info("iciformation: lead accepted", slog.Any("lead", lead))
		}
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, ErrInvalidLead):
		h.reject(w, r, http.StatusBadRequest, err.Error(), slog.Any("lead", lead))
	default:
		h.log(r).Error("iciformation: lead not stored", slog.Int("status", http.StatusServiceUnavailable),
			slog.Any("err", err), slog.Any("lead", lead))
		httpapi.WriteError(w, http.StatusServiceUnavailable, msgUnavailable)
	}
}

// log is the request's logger, built only when something is logged.
func (h *handler) log(r *http.Request) *slog.Logger {
	return h.cfg.Logger.With(slog.String("remote_addr", r.RemoteAddr))
}

func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, msg string, attrs ...any) {
	h.log(r).Warn("iciformation: lead rejected", append([]any{slog.Int("status", status), slog.String("reason", msg)}, attrs...)...)
	httpapi.WriteError(w, status, msg)
}

// isJSON accepts application/json with any parameters (charset=utf-8 is common).
func isJSON(contentType string) bool {
	if contentType == "application/json" { // what partners send: no need to parse it
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	// A malformed parameter ("application/json; charset") still names the type.
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false
	}
	return mt == "application/json"
}
