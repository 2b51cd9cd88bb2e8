package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/passerelle/passerelle/internal/httpapi"
)

// bareServerArg makes the bench binary the baseline server: os.Args[2] is its listen address.
const bareServerArg = "bare-server"

// runBareServer is the baseline: net/http, reading the body as the webhook does (same limit, same
// helper), then 200 with an empty body. Nothing is decoded or kept. Same server timeouts as the
// daemon's webhook server.
func runBareServer() {
	if len(os.Args) < 3 {
		fatal(fmt.Errorf("usage: passerelle-bench %s <addr>", bareServerArg))
	}
	ln, err := net.Listen("tcp", os.Args[2])
	if err != nil {
		fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := httpapi.ReadBody(w, r, 64<<10); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	fatal(srv.Serve(ln))
}
