package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/pipelines"
)

// adminCall talks to the running daemon's admin API at PASSERELLE_ADMIN_ADDR.
func adminCall(ctx context.Context, method, path string, body, out any) error {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+cfg.AdminAddr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("is the daemon running? admin API at %s: %w", cfg.AdminAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e httpapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("admin API %s: HTTP %d: %s", path, resp.StatusCode, e.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func dlq(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("usage: passerelle dlq list [--all] [--pipeline P] | dlq retry <id>|--all")
	}
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
		all := fs.Bool("all", false, "include dead letters already retried")
		pipeline := fs.String("pipeline", "", "only this pipeline")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err.Error()}
		}
		q := url.Values{}
		if *all {
			q.Set("all", "1")
		}
		if *pipeline != "" {
			q.Set("pipeline", *pipeline)
		}
		var dls []app.DeadLetterView
		if err := adminCall(ctx, http.MethodGet, "/admin/dlq?"+q.Encode(), nil, &dls); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "id\tpipeline\ttopic\tevent_id\tcreated_at\tretried\terror")
		for _, d := range dls {
			retried := ""
			if d.RetriedAt != nil {
				retried = d.RetriedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Pipeline, d.Topic, d.EventID, d.CreatedAt.Format(time.RFC3339), retried, d.Error)
		}
		return tw.Flush()
	case "retry":
		if len(args) != 2 {
			return usagef("usage: passerelle dlq retry <id>|--all")
		}
		body := map[string]any{"all": true}
		if args[1] != "--all" {
			id, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || id <= 0 {
				return usagef("dlq retry: %q is not a dead letter id (see `passerelle dlq list`)", args[1])
			}
			body = map[string]any{"id": id}
		}
		var out struct {
			Retried int `json:"retried"`
		}
		if err := adminCall(ctx, http.MethodPost, "/admin/dlq/retry", body, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-driven: %d\n", out.Retried)
		return nil
	default:
		return usagef("unknown dlq command %q", args[0])
	}
}

func stages(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return usagef("usage: passerelle stages")
	}
	var backlogs []pipelines.StageBacklog
	if err := adminCall(ctx, http.MethodGet, "/admin/stages", nil, &backlogs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "pipeline\tstage\tbacklog\toldest waited\terror")
	for _, b := range backlogs {
		waited := "-"
		if b.Oldest != nil {
			waited = (time.Duration(b.Waited * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.Pipeline, b.Stage, b.Messages, waited, b.Error)
	}
	return tw.Flush()
}

func endpoints(ctx context.Context, args []string, stdout io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "list":
		var off map[string]string
		if err := adminCall(ctx, http.MethodGet, "/admin/endpoints", nil, &off); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "endpoint\treason")
		for id, reason := range off {
			fmt.Fprintf(tw, "%s\t%s\n", id, reason)
		}
		return tw.Flush()
	case len(args) == 2 && args[0] == "enable":
		var out map[string]string
		if err := adminCall(ctx, http.MethodPost, "/admin/endpoints/enable", map[string]string{"endpoint": args[1]}, &out); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "enabled", args[1])
		return nil
	default:
		return usagef("usage: passerelle endpoints list | endpoints enable <endpoint id>")
	}
}
