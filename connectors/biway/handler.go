package biway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// CallbackAcceptor makes a callback durable (the reports pipeline: store the state if Advance
// says so, publish the change). It returns nil only once the callback will not be lost, and an
// error wrapping [ErrInvalidCallback] for one no retry can fix; any other error is answered
// 503 and the partner sends the callback again. Duplicates and stale states are the acceptor's
// to ignore, with nil.
//
// The context is not cancelled when the partner hangs up, so AcceptCallback must bound its own
// wait.
type CallbackAcceptor interface {
	AcceptCallback(ctx context.Context, cb Callback) error
}

// CallbackConfig configures [NewCallbackHandler]. Zero values take the defaults.
type CallbackConfig struct {
	// Secret returns the whsec_ secret registered with RegisterCallback. It is read on every
	// request, so a new registration takes effect at once; an empty secret refuses everything.
	Secret func() string
	// MaxBody bounds the request body; default 64 KiB, far above a report.
	MaxBody int64
	// Logger receives one line per rejected request or accepted callback; discarded when nil.
	Logger *slog.Logger
	// Now is the clock the signature's timestamp is checked against; default time.Now.
	Now func() time.Time
	// Metrics counts callbacks by type and result; nil for none.
	Metrics *Metrics
}

const (
	defaultMaxBody = 64 << 10
	msgUnavailable = "callback could not be stored, retry later"
	msgBadSig      = "missing, invalid or stale signature"
)

// NewCallbackHandler returns the endpoint Bi-way posts callbacks to (POST /webhooks/biway). It
// checks, in order, the method (405), the body size (413), the Standard Webhooks signature
// with a 5-minute tolerance (401), the JSON (400), then calls acc and answers 200 with an empty
// body only when acc returned nil (400 for an ErrInvalidCallback, 503 otherwise). Errors are
// {"error": true, "message": …}.
func NewCallbackHandler(cfg CallbackConfig, acc CallbackAcceptor) http.Handler {
	if acc == nil {
		panic("biway: NewCallbackHandler needs a CallbackAcceptor")
	}
	if cfg.Secret == nil {
		cfg.Secret = func() string { return "" }
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = defaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &callbackHandler{cfg: cfg, acc: acc}
}

type callbackHandler struct {
	cfg CallbackConfig
	acc CallbackAcceptor
}

func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, http.StatusMethodNotAllowed, "method not allowed, use POST", slog.String("method", r.Method))
		h.cfg.Metrics.observe(Callback{}, resultInvalid)
		return
	}
	body, err := httpapi.ReadBody(w, r, h.cfg.MaxBody)
	if errors.Is(err, httpapi.ErrTooLarge) {
		h.reject(w, r, http.StatusRequestEntityTooLarge, "request body too large", slog.Int64("max_bytes", h.cfg.MaxBody))
		h.cfg.Metrics.observe(Callback{}, resultTooLarge)
		return
	}
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "could not read request body", slog.Any("err", err))
		h.cfg.Metrics.observe(Callback{}, resultInvalid)
		return
	}
	secret := h.cfg.Secret()
	if secret == "" {
		h.reject(w, r, http.StatusUnauthorized, msgBadSig, slog.String("cause", "no callback secret registered"))
		h.cfg.Metrics.observe(Callback{}, resultSignature)
		return
	}
	if err := stdwebhook.Verify(secret, r.Header, body, h.cfg.Now()); err != nil {
		// The sender learns nothing about which check failed; the log says.
		h.reject(w, r, http.StatusUnauthorized, msgBadSig, slog.Any("err", err))
		h.cfg.Metrics.observe(Callback{}, resultSignature)
		return
	}
	cb, err := DecodeCallback(body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, err.Error())
		h.cfg.Metrics.observe(Callback{}, resultInvalid)
		return
	}
	cb.WebhookID = r.Header.Get(stdwebhook.HeaderID)

	// A signed callback that arrived is made durable even if the partner hangs up.
	ctx := context.WithoutCancel(r.Context())
	err = h.acc.AcceptCallback(ctx, cb)
	switch {
	case err == nil:
		if h.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
			h.cfg.Logger.Info("biway: callback accepted", callbackAttrs(cb)...)
		}
		w.WriteHeader(http.StatusOK)
		h.cfg.Metrics.observe(cb, resultAccepted)
	case errors.Is(err, ErrInvalidCallback):
		h.reject(w, r, http.StatusBadRequest, err.Error(), callbackAttrs(cb)...)
		h.cfg.Metrics.observe(cb, resultInvalid)
	default:
		h.cfg.Logger.Error("biway: callback not stored", append([]any{slog.Int("status", http.StatusServiceUnavailable),
			slog.Any("err", err)}, callbackAttrs(cb)...)...)
		httpapi.WriteError(w, http.StatusServiceUnavailable, msgUnavailable)
		h.cfg.Metrics.observe(cb, resultUnavailable)
	}
}

// callbackAttrs are the log fields of a callback: ids and states, no personal data (a report
// names no recipient).
func callbackAttrs(cb Callback) []any {
	a := []any{slog.String("type", cb.Type), slog.String("webhook_id", cb.WebhookID)}
	switch {
	case cb.Report != nil:
		a = append(a, slog.String("message_id", cb.Report.MessageID), slog.String("reference", cb.Report.Reference),
			slog.String("etat", string(cb.Report.Etat)))
	case cb.Entity != nil:
		a = append(a, slog.String("id", cb.Entity.ID), slog.String("etat", string(cb.Entity.Etat)))
	}
	return a
}

func (h *callbackHandler) reject(w http.ResponseWriter, r *http.Request, status int, msg string, attrs ...any) {
	h.cfg.Logger.Warn("biway: callback rejected", append([]any{slog.Int("status", status), slog.String("reason", msg),
		slog.String("remote_addr", r.RemoteAddr)}, attrs...)...)
	httpapi.WriteError(w, status, msg)
}
