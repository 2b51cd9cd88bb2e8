// Package httpapi holds what passerelle's own HTTP endpoints share: the JSON error shape of the
// partner contracts and body reading with a size limit.
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// ErrorBody is the error shape every passerelle endpoint answers, as Shop Application does.
type ErrorBody struct {
	Error   bool   `json:"error"`
	Message string `json:"message"`
}

// WriteError answers status with {"error": true, "message": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorBody{Error: true, Message: msg})
}

// WriteJSON answers status with v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing left to tell it
}

// ErrTooLarge is returned by ReadBody when the body exceeds the limit.
var ErrTooLarge = errors.New("request body too large")

// ReadBody reads at most limit bytes of r's body, ErrTooLarge past that.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, ErrTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, ErrTooLarge
	}
	return b, err
}
