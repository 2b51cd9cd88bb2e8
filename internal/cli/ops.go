package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/pipelines"
)

func dlqCmd(cli *modules.CLI) *cobra.Command {
	root := modules.Group(&cobra.Command{Use: "dlq", Short: "List and re-drive dead letters (through the running daemon)"})
	var all bool
	var pipeline string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (pending only unless --all)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			if all {
				q.Set("all", "1")
			}
			if pipeline != "" {
				q.Set("pipeline", pipeline)
			}
			var dls []app.DeadLetterView
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/dlq?"+q.Encode(), nil, &dls); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(dls)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "id\tpipeline\ttopic\tevent_id\tcreated_at\tretried\terror")
			for _, d := range dls {
				retried := ""
				if d.RetriedAt != nil {
					retried = d.RetriedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Pipeline, d.Topic, d.EventID, d.CreatedAt.Format(time.RFC3339), retried, d.Error)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&all, "all", false, "include dead letters already retried")
	list.Flags().StringVar(&pipeline, "pipeline", "", "only this pipeline")
	var retryAll bool
	retry := &cobra.Command{
		Use:   "retry <id> | --all",
		Short: "Re-drive dead letters through their pipeline",
		Args: func(_ *cobra.Command, args []string) error {
			if (len(args) == 1) == retryAll {
				return modules.UsageErrorf("usage: passerelle dlq retry <id> | dlq retry --all")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			body := map[string]any{"all": true}
			if !retryAll {
				id, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || id <= 0 {
					return modules.UsageErrorf("dlq retry: %q is not a dead letter id (see `passerelle dlq list`)", args[0])
				}
				body = map[string]any{"id": id}
			}
			var out struct {
				Retried int `json:"retried"`
			}
			if err := cli.Admin(c.Context(), http.MethodPost, "/admin/dlq/retry", body, &out); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(out)
			}
			fmt.Fprintf(cli.Out, "re-driven: %d\n", out.Retried)
			return nil
		},
	}
	retry.Flags().BoolVar(&retryAll, "all", false, "re-drive every pending dead letter")
	root.AddCommand(list, retry)
	return root
}

func stagesCmd(cli *modules.CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "stages",
		Short: "Each stage's backlog: messages not yet acknowledged, and how long the oldest waited",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var backlogs []pipelines.StageBacklog
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/stages", nil, &backlogs); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(backlogs)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "pipeline\tstage\tbacklog\toldest waited\terror")
			for _, b := range backlogs {
				waited := "-"
				if b.Oldest != nil {
					waited = (time.Duration(b.Waited * float64(time.Second))).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.Pipeline, b.Stage, b.Messages, waited, b.Error)
			}
			return tw.Flush()
		},
	}
}

func endpointsCmd(cli *modules.CLI) *cobra.Command {
	root := modules.Group(&cobra.Command{Use: "endpoints", Short: "List and re-enable sink endpoints disabled after a 410 Gone"})
	list := &cobra.Command{
		Use:   "list",
		Short: "List sink endpoints disabled after a 410 Gone, and the events each holds",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var views []app.EndpointView
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/endpoints", nil, &views); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(views)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "endpoint\tstate\theld\treason")
			for _, v := range views {
				state := "enabled"
				if v.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Endpoint, state, v.Held, v.Reason)
			}
			return tw.Flush()
		},
	}
	enable := &cobra.Command{
		Use:   "enable <endpoint id>",
		Short: "Re-enable a disabled endpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var out map[string]string
			if err := cli.Admin(c.Context(), http.MethodPost, "/admin/endpoints/enable", map[string]string{"endpoint": args[0]}, &out); err != nil {
				return err
			}
			fmt.Fprintln(cli.Out, "enabled", args[0])
			return nil
		},
	}
	root.AddCommand(list, enable)
	return root
}
