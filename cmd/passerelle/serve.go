package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
)

func loadConfig(ctx context.Context) (config.Config, error) {
	cfg, err := config.Load(ctx)
	if err != nil {
		return cfg, usageError{err.Error()}
	}
	return cfg, nil
}

func serve(ctx context.Context, stderr io.Writer) error {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	log := app.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	for _, c := range cfg.Connectors() {
		log.Info("connector", "name", c.Name, "on", c.On, "why", c.Why)
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func checkConfig(ctx context.Context, stdout io.Writer) error {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "connector\ton\twhy")
	for _, c := range cfg.Connectors() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, map[bool]string{true: "on", false: "off"}[c.On], c.Why)
	}
	fmt.Fprintln(tw)
	for _, kv := range cfg.Effective() {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func configTable(stdout io.Writer) error {
	_, err := io.WriteString(stdout, config.MarkdownTable())
	return err
}
