package modules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// clientsCommand is the client directory's command group: it opens the daemon's store
// (PASSERELLE_DATA_DIR or PASSERELLE_STORE_DSN), so it works with or without a running daemon.
func clientsCommand(cli *CLI) *cobra.Command {
	root := Group(&cobra.Command{
		Use:   "clients",
		Short: "The client directory billing takes identities from: import a file, show a client",
		Long: `The client directory keeps, per client, the identity billing needs (company, names, email,
phone, address, SIRET), keyed by our guid and by partner keys (sa_key, client_id), with the source
and time of each field: the newer value wins, field by field. shopapp create records into it.

Run the commands with the daemon's PASSERELLE_DATA_DIR or PASSERELLE_STORE_DSN.`,
	})
	var dry bool
	imp := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Record a CSV file of client identities, all lines or none",
		Long: `Record a CSV file of client identities in one transaction: a bad line (reported with its
number) imports nothing. UTF-8, separated by ; or , (whichever the header holds more of), with a
header line naming any of these columns (case ignored) and at least one key column:

` + clientColumnsHelp(),
		Args: cobra.ExactArgs(1),
		Example: `  passerelle clients import clients.csv --dry-run   # print what would change
  passerelle clients import clients.csv`,
		RunE: func(c *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return UsageErrorf("%v", err)
			}
			lines, err := pipelines.ParseClientsCSV(data, "import "+filepath.Base(args[0]), time.Now().UTC())
			if err != nil {
				return fmt.Errorf("%s: nothing imported:\n%w", args[0], err)
			}
			st, err := openStore(c.Context(), cli)
			if err != nil {
				return err
			}
			defer st.Close()
			ids := make([]store.Identity, len(lines))
			for i, l := range lines {
				ids[i] = l.Identity
			}
			changes, err := st.ImportIdentities(c.Context(), ids, dry)
			if err != nil {
				return fmt.Errorf("%s: nothing imported: %w", args[0], err)
			}
			if cli.JSON() {
				type lineChange struct {
					Line int `json:"line"`
					store.IdentityChange
				}
				out := make([]lineChange, len(changes))
				for i, ch := range changes {
					out[i] = lineChange{lines[i].Line, ch}
				}
				return cli.PrintJSON(out)
			}
			return writeImport(cli, lines, changes, dry)
		},
	}
	imp.Flags().BoolVar(&dry, "dry-run", false, "print what would change, record nothing")

	var guid, key string
	show := &cobra.Command{
		Use:     "show",
		Short:   "Print what the directory knows of a client, and from where",
		Args:    cobra.NoArgs,
		Example: "  passerelle clients show --guid G-1\n  passerelle clients show --key SA-1234   # the billing file's reference_client",
		RunE: func(c *cobra.Command, _ []string) error {
			if (guid == "") == (key == "") {
				return UsageErrorf("give --guid or --key (one of them)")
			}
			kind, value := store.KeyGUID, guid
			if key != "" {
				kind, value = store.KeySAKey, key
				if k, v, ok := strings.Cut(key, "="); ok {
					kind, value = k, v // --key client_id=123
				}
			}
			st, err := openStore(c.Context(), cli)
			if err != nil {
				return err
			}
			defer st.Close()
			cl, ok, err := st.ClientByKey(c.Context(), kind, value)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no client with %s %q in the directory", kind, value)
			}
			if cli.JSON() {
				return cli.PrintJSON(cl)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			for _, k := range cl.SortedKinds() {
				fmt.Fprintf(tw, "%s\t%s\n", k, strings.Join(cl.Keys[k], ", "))
			}
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "field\tvalue\tsource\tat")
			for _, f := range store.IdentityFields {
				if v, ok := cl.Fields[f]; ok {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f, v.Value, v.Source, v.At.Format(time.RFC3339))
				} else {
					fmt.Fprintf(tw, "%s\t-\t\t\n", f)
				}
			}
			return tw.Flush()
		},
	}
	show.Flags().StringVar(&guid, "guid", "", "our guid of the client")
	show.Flags().StringVar(&key, "key", "", "its Shop Application key (sa_key, the billing file's reference_client), or kind=value")
	root.AddCommand(imp, show)
	return root
}

func clientColumnsHelp() string {
	var b strings.Builder
	for _, c := range pipelines.ClientColumns {
		name := c.Name
		if len(c.Aliases) > 0 {
			name += " (or " + strings.Join(c.Aliases, ", ") + ")"
		}
		fmt.Fprintf(&b, "  %-28s %s\n", name, c.Help)
	}
	return b.String()
}

func openStore(ctx context.Context, cli *CLI) (*store.Store, error) {
	cfg, err := cli.Config(ctx)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, cfg.StoreLocation())
}

func writeImport(cli *CLI, lines []pipelines.ClientLine, changes []store.IdentityChange, dry bool) error {
	var created, changed, same int
	for i, ch := range changes {
		switch {
		case ch.New:
			created++
		case ch.Changed():
			changed++
		default:
			same++
		}
		if !ch.Changed() && len(ch.Kept) == 0 {
			continue
		}
		var what []string
		if ch.New {
			what = append(what, "new client")
		}
		if len(ch.KeysAdded) > 0 && !ch.New {
			what = append(what, "keys "+strings.Join(ch.KeysAdded, ", "))
		}
		if ch.Merged > 0 {
			what = append(what, fmt.Sprintf("merges %d clients known apart", ch.Merged+1))
		}
		for _, f := range ch.Fields {
			if f.Old == "" {
				what = append(what, fmt.Sprintf("%s %q", f.Field, f.New))
			} else {
				what = append(what, fmt.Sprintf("%s %q → %q (was from %s)", f.Field, f.Old, f.New, f.OldSource))
			}
		}
		for _, f := range ch.Kept {
			what = append(what, f+" kept (the directory's value is newer)")
		}
		fmt.Fprintf(cli.Out, "line %d (%s): %s\n", lines[i].Line, lineKeys(lines[i].Identity), strings.Join(what, "; "))
	}
	verb := "imported"
	if dry {
		verb = "dry run, nothing recorded"
	}
	_, err := fmt.Fprintf(cli.Out, "%d lines (%s): %d new clients, %d changed, %d unchanged\n", len(changes), verb, created, changed, same)
	return err
}

func lineKeys(id store.Identity) string {
	var ks []string
	if id.GUID != "" {
		ks = append(ks, "guid "+id.GUID)
	}
	for _, k := range []string{store.KeySAKey, store.KeyClientID} {
		if v := id.Keys[k]; v != "" {
			ks = append(ks, k+" "+v)
		}
	}
	return strings.Join(ks, ", ")
}
