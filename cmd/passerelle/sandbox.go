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
	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/pipelines"
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

	dataDir := os.Getenv("PASSERELLE_DATA_DIR")
	if dataDir == "" {
		dataDir = filepath.Join("data", "sandbox")
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))

	// Shop Application: a few dozen interfaces that keep changing.
	sim, err := shopapp.StartSimulator(shopapp.SimConfig{InstallDelay: time.Minute})
	if err != nil {
		return fmt.Errorf("start Shop Application simulator: %w", err)
	}
	defer sim.Close()
	sim.Seed(40, rng)

	// The partner's SFTP depot, in-process, with its host key pinned in a known_hosts file.
	sftpRoot := filepath.Join(dataDir, "sftp")
	if err := os.MkdirAll(filepath.Join(sftpRoot, "depot"), 0o750); err != nil {
		return err
	}
	depot, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: sftpRoot, User: "partner", Password: "sandbox-sftp"})
	if err != nil {
		return fmt.Errorf("start SFTP simulator: %w", err)
	}
	defer depot.Close()
	knownHosts := filepath.Join(dataDir, "known_hosts")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return err
	}
	if err := depot.WriteKnownHosts(knownHosts); err != nil {
		return err
	}

	env := os.Environ()
	env = append(env, "PASSERELLE_DATA_DIR="+dataDir,
		"PASSERELLE_ICIFORMATION_TOKEN="+sandboxToken, "PASSERELLE_ICIFORMATION_AUTH=bearer",
		"PASSERELLE_CRM_URL="+receiver.URL(), "PASSERELLE_CRM_SECRET="+secret,
		"PASSERELLE_SHOPAPP_URL="+sim.URL(), "PASSERELLE_SHOPAPP_CLIENT_ID="+sim.ClientID(), "PASSERELLE_SHOPAPP_CLIENT_SECRET="+sim.ClientSecret(),
		"PASSERELLE_SHOPAPP_POLL_INTERVAL=10s", "PASSERELLE_SHOPAPP_RATE=50",
		"PASSERELLE_SFTP_ADDR="+depot.Addr(), "PASSERELLE_SFTP_USER=partner", "PASSERELLE_SFTP_PASSWORD=sandbox-sftp",
		"PASSERELLE_SFTP_KNOWN_HOSTS="+knownHosts, "PASSERELLE_SFTP_DIR=/depot/")
	cfg, err := config.LoadFrom(ctx, env)
	if err != nil {
		return usageError{err.Error()}
	}
	log := app.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	prev := pipelines.PeriodOf(time.Now()).Previous()
	period := prev.String()
	hookURL := "http://" + loopback(a.HTTPAddr()) + "/webhooks/iciformation"
	admin := "http://" + loopback(a.AdminAddr())
	fmt.Fprintf(stdout, `passerelle sandbox — the daemon on the embedded broker and SQLite under %s,
wired to simulated partners. Leads are posted every %s by a simulated Ici Formation.

  metrics        %s/metrics   (grep passerelle_stage_messages_total)
  readiness      %s/readyz
  CRM simulator  %s  (verifies Standard Webhooks signatures)
  dead letters   PASSERELLE_ADMIN_ADDR=%s go run ./cmd/passerelle dlq list
  stage backlog  PASSERELLE_ADMIN_ADDR=%s go run ./cmd/passerelle stages

Shop Application simulator %s (interfaces change every few seconds; polled every 10s)
SFTP depot (in-process)      %s, files land in %s

Bill last month now, then look at the file:
  PASSERELLE_ADMIN_ADDR=%s go run ./cmd/passerelle billing run --period %s
  cat %s
  PASSERELLE_ADMIN_ADDR=%s go run ./cmd/passerelle billing run --period %s --dry-run   # print without uploading

Post a lead yourself:
  curl -i -X POST %s \
    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"nom":"Doe","prenom":"John","civilite":"M.","tel":"0102030405","email":"john.doe@example.com","ville":"paris","code_postal":"75001","formation":"Développement Web","id_client":"1234"}'

Ctrl-C stops it.
`, cfg.DataDir, *every, admin, admin, receiver.URL(), loopback(a.AdminAddr()), loopback(a.AdminAddr()),
		sim.URL(), depot.Addr(), filepath.Join(sftpRoot, "depot"),
		loopback(a.AdminAddr()), period, filepath.Join(sftpRoot, "depot", pipelines.FileName(prev)),
		loopback(a.AdminAddr()), pipelines.PeriodOf(time.Now()).String(),
		hookURL, sandboxToken)

	sender := &iciformation.Sender{URL: hookURL, Auth: httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: sandboxToken}}
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				sim.Mutate(r)
			}
		}
	}()
	go sender.Run(ctx, *every, rng, func(status int, err error) {
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
