package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// buildShopAppAndBilling wires the Shop Application poller and provisioning (when configured) and
// the billing run, scheduled when an SFTP server is configured.
func (a *App) buildShopAppAndBilling(ctx context.Context, w pipelines.Wiring, sink *pipelines.CRMSink, hm *httpclient.Metrics) error {
	cfg := a.Cfg
	var err error
	var prov *pipelines.Provisioner
	if cfg.ShopApp.URL != "" {
		if a.ShopApp, err = NewShopAppClient(cfg, hm, shopapp.NewMetrics(a.Registry)); err != nil {
			return err
		}
		prov = &pipelines.Provisioner{API: a.ShopApp, Store: a.Store}
		a.Poller = &pipelines.ShopAppPoller{API: a.ShopApp, Store: a.Store, Pub: a.Pub, Concurrency: cfg.ShopApp.Concurrency,
			Log: a.Log.With("pipeline", "shopapp"), Now: w.Now, Metrics: pipelines.NewShopAppMetrics(a.Registry)}
		a.background = append(a.background, func(ctx context.Context) { a.Poller.Run(ctx, cfg.ShopApp.PollInterval) })
	}
	if err := pipelines.AddShopApp(ctx, w, &pipelines.BillingLedger{Store: a.Store}, sink, prov, a.Store); err != nil {
		return err
	}
	if err := pipelines.AddBilling(ctx, w, sink, a.Store); err != nil {
		return err
	}
	a.Billing = &pipelines.Billing{
		Store: a.Store, Pub: a.Pub, CSV: transforms.CSVOptions{BOM: cfg.Billing.BOM, DecimalComma: cfg.Billing.DecimalComma},
		Metrics: pipelines.NewBillingMetrics(a.Registry), Log: a.Log.With("pipeline", "billing"), Now: w.Now,
		UploadAttempts: 4, UploadBackoff: 2 * time.Second,
	}
	if a.ShopApp != nil {
		a.Billing.Catalogue = a.ShopApp
	}
	if cfg.SFTP.Addr != "" {
		up, err := NewUploader(cfg, sftp.NewMetrics(a.Registry))
		if err != nil {
			return err
		}
		a.Billing.Uploader = up
		a.background = append(a.background, func(ctx context.Context) {
			if err := a.Billing.Schedule(ctx, cfg.Billing.Schedule, 10*time.Minute); err != nil {
				a.Log.Error("billing schedule stopped", "error", err)
			}
		})
	}
	return nil
}

// NewShopAppClient builds the Shop Application client from the configuration (also used by the
// operator commands).
func NewShopAppClient(cfg config.Config, hm *httpclient.Metrics, m *shopapp.Metrics) (*shopapp.Client, error) {
	c, err := shopapp.New(shopapp.Config{BaseURL: cfg.ShopApp.URL, ClientID: cfg.ShopApp.ClientID, ClientSecret: cfg.ShopApp.ClientSecret, Rate: cfg.ShopApp.Rate}, hm, m)
	if err != nil {
		return nil, fmt.Errorf("shopapp: %w", err)
	}
	return c, nil
}

// NewUploader builds the SFTP uploader from the configuration.
func NewUploader(cfg config.Config, m *sftp.Metrics) (*sftp.Uploader, error) {
	sc := sftp.Config{Addr: cfg.SFTP.Addr, User: cfg.SFTP.User, Password: cfg.SFTP.Password, KnownHostsFile: cfg.SFTP.KnownHosts, Dir: cfg.SFTP.Dir,
		ConcurrentWrites: cfg.SFTP.ConcurrentWrites}
	if cfg.SFTP.KeyFile != "" {
		key, err := os.ReadFile(cfg.SFTP.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("PASSERELLE_SFTP_KEY_FILE: %w", err)
		}
		sc.PrivateKey = key
	}
	up, err := sftp.NewUploader(sc, m)
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	return up, nil
}
