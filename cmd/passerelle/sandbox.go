package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

const sandboxToken = "sandbox-token"

// sandbox runs the daemon on the embedded default, wired to the built-in simulators: an Ici
// Formation sender posting leads and a CRM receiver checking signatures.
func sandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	every := fs.Duration("lead-every", 3*time.Second, "how often the simulated partner posts a lead")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return err
	}
	receiver, err := crm.StartReceiver(secret)
	if err != nil {
		return fmt.Errorf("start CRM simulator: %w", err)
	}
	defer receiver.Close()

	env := os.Environ()
	env = append(env, "PASSERELLE_ICIFORMATION_TOKEN="+sandboxToken, "PASSERELLE_ICIFORMATION_AUTH=bearer",
		"PASSERELLE_CRM_URL="+receiver.URL(), "PASSERELLE_CRM_SECRET="+secret)
	if os.Getenv("PASSERELLE_DATA_DIR") == "" {
		env = append(env, "PASSERELLE_DATA_DIR="+filepath.Join("data", "sandbox"))
	}
	cfg, err := config.LoadFrom(ctx, env)
	if err != nil {
		return usageError{err.Error()}
	}
	log := app.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	hookURL := "http://" + loopback(a.HTTPAddr()) + "/webhooks/iciformation"
	admin := "http://" + loopback(a.AdminAddr())
	fmt.Fprintf(stdout, `passerelle sandbox — the daemon on the embedded broker and SQLite under %s,
wired to simulated partners. Leads are posted every %s by a simulated Ici Formation.

  metrics        %s/metrics   (grep passerelle_stage_messages_total)
  readiness      %s/readyz
  CRM simulator  %s  (verifies Standard Webhooks signatures)
  dead letters   PASSERELLE_ADMIN_ADDR=%s go run ./cmd/passerelle dlq list

Post a lead yourself:
  curl -i -X POST %s \
    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"nom":"Doe","prenom":"John","civilite":"M.","tel":"0102030405","email":"john.doe@example.com","ville":"paris","code_postal":"75001","formation":"Développement Web","id_client":"1234"}'

Ctrl-C stops it.
`, cfg.DataDir, *every, admin, admin, receiver.URL(), loopback(a.AdminAddr()), hookURL, sandboxToken)

	sender := &iciformation.Sender{URL: hookURL, Auth: httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: sandboxToken}}
	go sender.Run(ctx, *every, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)), func(status int, err error) {
		if err != nil && ctx.Err() == nil {
			log.Warn("simulated lead not accepted", "status", status, "error", err)
		}
	})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				log.Info("sandbox CRM simulator", "leads_received", len(receiver.UniqueIDs()), "rejected_signatures", receiver.Rejected())
			}
		}
	}()
	return a.Run(ctx)
}

// loopback makes ":8080" printable as a URL host.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "::" || host == "0.0.0.0" {
		return "127.0.0.1:" + port
	}
	return net.JoinHostPort(host, port)
}
