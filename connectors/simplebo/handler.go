package simplebo

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/passerelle/passerelle/internal/httpapi"
)

// EventAcceptor takes a decoded event and makes it durable (the client-state pipeline). It
// returns nil only once the event will not be lost, and an error wrapping ErrInvalidEvent for
// an event no retry can fix; its error messages are logged and, for invalid events, sent back
// to the partner: they must not carry personal data. The context is not cancelled when the
// partner hangs up, so AcceptEvent bounds its own wait.
type EventAcceptor interface {
	AcceptEvent(ctx context.Context, ev Event) error
}

// WebhookConfig configures NewWebhookHandler. Zero values take the defaults.
type WebhookConfig struct {
	// Secret is the last path segment Simplébo posts to (/webhooks/simplebo/<Secret>); an empty
	// Secret answers 404 to every request: a missing secret must not open the door.
	Secret string
	// Auth, when set, is a token the request must also carry (the schemes of Ici Formation).
	Auth *httpapi.TokenAuth
	// MaxBody bounds the request body; 64 KiB by default, far above a real event.
	MaxBody int64
	// Logger receives one line per rejected request or accepted event; discarded when nil.
	Logger *slog.Logger
	// Metrics counts answers and event codes; nil counts nothing.
	Metrics *Metrics
}

const (
	defaultMaxBody = 64 << 10
	msgNotFound    = "no such endpoint"
	msgUnavailable = "event could not be stored, retry later"
)

// NewWebhookHandler returns the endpoint Simplébo posts client-state events to, mounted at
// /webhooks/simplebo/. It checks, in order, the secret path segment (404 exactly as for an
// unknown path, so that nothing tells the endpoint exists), the method (405), the token (401),
// the body size (413), the content type (415) and the fields (400), then calls acc and answers
// 200 with an empty body only when acc returned nil: 400 when its error wraps ErrInvalidEvent,
// 503 otherwise. Errors are {"error": true, "message": …}.
func NewWebhookHandler(cfg WebhookConfig, acc EventAcceptor) http.Handler {
	if acc == nil {
		panic("simplebo: NewWebhookHandler needs an EventAcceptor")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = defaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Secret == "" {
		cfg.Logger.Warn("simplebo: no webhook secret configured, every event will be answered 404")
	}
	return &webhook{cfg: cfg, acc: acc, secret: sha256.Sum256([]byte(cfg.Secret))}
}

type webhook struct {
	cfg    WebhookConfig
	acc    EventAcceptor
	secret [sha256.Size]byte
}

// secretOK compares digests, so that neither the secret nor its length leaks through timing.
func (h *webhook) secretOK(path string) bool {
	if h.cfg.Secret == "" {
		return false
	}
	got := sha256.Sum256([]byte(path[strings.LastIndexByte(path, '/')+1:]))
	return subtle.ConstantTimeCompare(got[:], h.secret[:]) == 1
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.secretOK(r.URL.Path) {
		// Logged without the path: it holds a guess at the secret, maybe a near miss.
		h.reject(w, r, http.StatusNotFound, msgNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, http.StatusMethodNotAllowed, "method not allowed, use POST", slog.String("method", r.Method))
		return
	}
	if h.cfg.Auth != nil && !h.cfg.Auth.Check(r) {
		h.reject(w, r, http.StatusUnauthorized, "missing or invalid credentials")
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
	ev, err := DecodeEvent(r.Header.Get("Content-Type"), body)
	if errors.Is(err, ErrUnsupportedContentType) {
		h.reject(w, r, http.StatusUnsupportedMediaType, ErrUnsupportedContentType.Error())
		return
	}
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, err.Error())
		return
	}
	h.cfg.Metrics.event(ev.Type)

	// Simplébo may never send this event again: once it is here, finish making it durable even
	// if the partner hangs up.
	ctx := context.WithoutCancel(r.Context())
	err = h.acc.AcceptEvent(ctx, ev)
	switch {
	case err == nil:
		h.cfg.Metrics.answered(http.StatusOK)
		if h.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
			h.log(r).Info("simplebo: event accepted", slog.Any("event", ev))
		}
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, ErrInvalidEvent):
		h.reject(w, r, http.StatusBadRequest, err.Error(), slog.Any("event", ev))
	default:
		h.cfg.Metrics.answered(http.StatusServiceUnavailable)
		h.log(r).Error("simplebo: event not stored", slog.Int("status", http.StatusServiceUnavailable),
			slog.Any("err", err), slog.Any("event", ev))
		httpapi.WriteError(w, http.StatusServiceUnavailable, msgUnavailable)
	}
}

// log is the request's logger, built only when something is logged.
func (h *webhook) log(r *http.Request) *slog.Logger {
	return h.cfg.Logger.With(slog.String("remote_addr", r.RemoteAddr))
}

func (h *webhook) reject(w http.ResponseWriter, r *http.Request, status int, msg string, attrs ...any) {
	h.cfg.Metrics.answered(status)
	h.log(r).Warn("simplebo: webhook rejected", append([]any{slog.Int("status", status), slog.String("reason", msg)}, attrs...)...)
	httpapi.WriteError(w, status, msg)
}
