package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// billing runs or shows billing through the running daemon, which owns the ledger, the SFTP
// connection and the transport the billing.file_uploaded event goes out on.
func billing(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("usage: passerelle billing run --period YYYY-MM [--dry-run] [--force] | billing status")
	}
	switch args[0] {
	case "run":
		fs := flag.NewFlagSet("billing run", flag.ContinueOnError)
		period := fs.String("period", "", "month to bill, YYYY-MM (default: the previous month)")
		dry := fs.Bool("dry-run", false, "print the file, upload and record nothing")
		force := fs.Bool("force", false, "upload even if the period was already uploaded")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err.Error()}
		}
		if *period == "" {
			*period = pipelines.PeriodOf(time.Now()).Previous().String()
		}
		if _, err := transforms.ParsePeriod(*period); err != nil {
			return usagef("--period %q: %v", *period, err)
		}
		var rep pipelines.Report
		if err := adminCall(ctx, http.MethodPost, "/admin/billing/run", map[string]any{"period": *period, "dry_run": *dry, "force": *force}, &rep); err != nil {
			return err
		}
		if *dry {
			_, err := io.WriteString(stdout, rep.CSV)
			return err
		}
		switch rep.Outcome {
		case "already_uploaded":
			fmt.Fprintf(stdout, "%s already uploaded to %s (%d rows, sha256 %s): nothing done; use --force to upload again\n", rep.Period, rep.RemotePath, rep.Rows, rep.SHA256)
		default:
			fmt.Fprintf(stdout, "%s uploaded to %s: %d rows, %d bytes, sha256 %s\n", rep.Period, rep.RemotePath, rep.Rows, rep.Bytes, rep.SHA256)
		}
		return nil
	case "status":
		var st app.BillingStatus
		if err := adminCall(ctx, http.MethodGet, "/admin/billing", nil, &st); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "period\tstate\tremote_path\trows\tsha256\twhen\tlast_error")
		for _, u := range st.Uploads {
			fmt.Fprintf(tw, "%s\tuploaded\t%s\t%d\t%s\t%s\t\n", u.Period, u.RemotePath, u.Rows, u.SHA256, u.UploadedAt.Format(time.RFC3339))
		}
		for _, p := range st.Pending {
			fmt.Fprintf(tw, "%s\tpending (%d attempts)\t\t\t\t%s\t%s\n", p.Period, p.Attempts, p.Since.Format(time.RFC3339), p.LastError)
		}
		return tw.Flush()
	default:
		return usagef("unknown billing command %q", args[0])
	}
}
