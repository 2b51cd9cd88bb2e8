package ecolix_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
)

const goodCSV = "id;date_modification;reference;nom\n" +
	"1;2026-12-04 15:00:00;g-1;Martin\n" +
	"2;2026-12-04 15:00:00;g-2;Durand\n"

type inboxFixture struct {
	dir   string
	inbox *ecolix.Inbox
	reg   *prometheus.Registry
	got   map[string][]ecolix.Record // by file name
	fail  error                      // returned by process when set
}

func newInbox(t *testing.T, processed ecolix.Processed) *inboxFixture {
	t.Helper()
	f := &inboxFixture{dir: t.TempDir(), reg: prometheus.NewRegistry(), got: map[string][]ecolix.Record{}}
	if processed == nil {
		processed = ecolix.NewMemProcessed()
	}
	in, err := ecolix.NewInbox(ecolix.InboxConfig{FS: ecolix.LocalFS(f.dir), Processed: processed, Metrics: ecolix.NewMetrics(f.reg)})
	require.NoError(t, err)
	f.inbox = in
	return f
}

func (f *inboxFixture) write(t *testing.T, name, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o600))
}

func (f *inboxFixture) scan(t *testing.T) ecolix.ScanReport {
	t.Helper()
	rep, err := f.inbox.Scan(context.Background(), func(_ context.Context, file ecolix.File, recs []ecolix.Record) error {
		if f.fail != nil {
			return f.fail
		}
		f.got[file.Name] = append(f.got[file.Name], recs...)
		return nil
	})
	require.NoError(t, err)
	return rep
}

func (f *inboxFixture) exists(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, filepath.FromSlash(name)))
	return err == nil
}

func TestInboxProcessesAStableFileOnce(t *testing.T) {
	t.Parallel()
	f := newInbox(t, nil)
	f.write(t, "clients_2026-12-04.csv", goodCSV)
	f.write(t, "notes.txt", "not an export")

	rep := f.scan(t)
	require.Equal(t, []string{"clients_2026-12-04.csv"}, rep.Pending, "first sighting: it may still be written")
	require.Empty(t, f.got)

	rep = f.scan(t)
	require.Equal(t, []string{"clients_2026-12-04.csv"}, rep.Done)
	require.Len(t, f.got["clients_2026-12-04.csv"], 2)
	require.True(t, f.exists("traites/clients_2026-12-04.csv"))
	require.False(t, f.exists("clients_2026-12-04.csv"))
	require.True(t, f.exists("notes.txt"), "files that are not exports are left alone")

	// The same file dropped again is not processed again, and the first one is not overwritten.
	f.write(t, "clients_2026-12-04.csv", goodCSV)
	f.scan(t)
	rep = f.scan(t)
	require.Equal(t, []string{"clients_2026-12-04.csv"}, rep.Duplicates)
	require.Len(t, f.got["clients_2026-12-04.csv"], 2, "processed once")
	require.True(t, f.exists("traites/clients_2026-12-04.csv.1"))
	require.Equal(t, 1.0, counter(t, f.reg, "passerelle_ecolix_inbox_files_total", "done"))
	require.Equal(t, 1.0, counter(t, f.reg, "passerelle_ecolix_inbox_files_total", "duplicate"))
}

func TestInboxLeavesHalfWrittenFiles(t *testing.T) {
	t.Parallel()
	f := newInbox(t, nil)
	f.write(t, "devis.csv.tmp", goodCSV)
	f.write(t, "commandes.csv.part", goodCSV)
	f.write(t, "stocks.csv", goodCSV[:40])
	f.scan(t)
	f.write(t, "stocks.csv", goodCSV) // still growing

	rep := f.scan(t)
	require.ElementsMatch(t, []string{"devis.csv.tmp", "commandes.csv.part", "stocks.csv"}, rep.Pending)
	require.Empty(t, rep.Done)
	require.Empty(t, f.got)

	rep = f.scan(t)
	require.Equal(t, []string{"stocks.csv"}, rep.Done, "stable now")
	require.ElementsMatch(t, []string{"devis.csv.tmp", "commandes.csv.part"}, rep.Pending, ".tmp and .part are never read")
	require.True(t, f.exists("devis.csv.tmp"))
	require.True(t, f.exists("commandes.csv.part"))
}

func TestInboxBadLineFailsOnlyItsFile(t *testing.T) {
	t.Parallel()
	f := newInbox(t, nil)
	f.write(t, "articles_1.csv", "id;date_modification;nom\n1;2026-12-04 15:00:00;a\n2;2026-12-04 15:00:00;b\n3;hier;c\n")
	f.write(t, "articles_2.csv", goodCSV)
	f.scan(t)

	rep := f.scan(t)
	require.Equal(t, []string{"articles_1.csv"}, rep.Failed)
	require.Equal(t, []string{"articles_2.csv"}, rep.Done)
	require.NotContains(t, f.got, "articles_1.csv", "no record of a refused file is handed on")
	require.True(t, f.exists("erreurs/articles_1.csv"))
	reason, err := os.ReadFile(filepath.Join(f.dir, "erreurs", "articles_1.csv.raison.txt"))
	require.NoError(t, err)
	require.Contains(t, string(reason), "line 4", "the reason names the line")
	require.Equal(t, 1.0, counter(t, f.reg, "passerelle_ecolix_inbox_files_total", "error"))
}

func TestInboxProcessingFailureGoesToErreurs(t *testing.T) {
	t.Parallel()
	f := newInbox(t, nil)
	f.write(t, "clients.csv", goodCSV)
	f.scan(t)
	f.fail = errors.New("downstream refused the batch")
	rep := f.scan(t)
	require.Equal(t, []string{"clients.csv"}, rep.Failed)
	reason, err := os.ReadFile(filepath.Join(f.dir, "erreurs", "clients.csv.raison.txt"))
	require.NoError(t, err)
	require.Contains(t, string(reason), "downstream refused the batch")
}

// The processed record outlives the inbox (a restart): a file processed before is not again,
// even under the same name and back in the inbox.
func TestInboxRemembersAcrossRestarts(t *testing.T) {
	t.Parallel()
	processed := ecolix.NewMemProcessed()
	f := newInbox(t, processed)
	f.write(t, "devis.csv", goodCSV)
	f.scan(t)
	f.scan(t)
	require.Len(t, f.got["devis.csv"], 2)

	again, err := ecolix.NewInbox(ecolix.InboxConfig{FS: ecolix.LocalFS(f.dir), Processed: processed})
	require.NoError(t, err)
	require.NoError(t, os.Rename(filepath.Join(f.dir, "traites", "devis.csv"), filepath.Join(f.dir, "devis.csv")))
	calls := 0
	process := func(context.Context, ecolix.File, []ecolix.Record) error { calls++; return nil }
	_, err = again.Scan(context.Background(), process)
	require.NoError(t, err)
	rep, err := again.Scan(context.Background(), process)
	require.NoError(t, err)
	require.Equal(t, []string{"devis.csv"}, rep.Duplicates)
	require.Zero(t, calls)
}

func TestLocalFSStaysInItsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs := ecolix.LocalFS(filepath.Join(dir, "inbox"))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "inbox"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o600))
	_, err := fs.Open(context.Background(), "../secret")
	require.Error(t, err)
	require.Error(t, fs.Rename(context.Background(), "../secret", "stolen"))
	err = fs.WriteFile(context.Background(), "../escape", []byte("x"))
	require.Error(t, err)
}
