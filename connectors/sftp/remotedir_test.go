package sftp_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
)

// TestRemoteDir moves a dropped file through an inbox's folders on the in-process server, as the
// Ecolix inbox does, and refuses names that leave the folder.
func TestRemoteDir(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)
	d, err := sftp.NewRemoteDir(tg.cfg)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, os.WriteFile(filepath.Join(tg.localDir, "clients_1.csv"), []byte("id;date_modification\n"), 0o644))

	list, err := d.List(ctx, ".")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "clients_1.csv", list[0].Name())
	require.EqualValues(t, 21, list[0].Size())

	data, err := d.ReadFile(ctx, "clients_1.csv", 1<<20)
	require.NoError(t, err)
	require.Equal(t, "id;date_modification\n", string(data))
	_, err = d.ReadFile(ctx, "clients_1.csv", 4)
	require.ErrorContains(t, err, "over 4 bytes")

	_, err = d.Stat(ctx, "traites/clients_1.csv")
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.NoError(t, d.MkdirAll(ctx, "traites"))
	require.NoError(t, d.MkdirAll(ctx, "traites"), "MkdirAll of an existing folder")
	require.NoError(t, d.Rename(ctx, "clients_1.csv", "traites/clients_1.csv"))
	fi, err := d.Stat(ctx, "traites/clients_1.csv")
	require.NoError(t, err)
	require.EqualValues(t, 21, fi.Size())

	require.NoError(t, os.WriteFile(filepath.Join(tg.localDir, "clients_1.csv"), []byte("again"), 0o644))
	require.Error(t, d.Rename(ctx, "clients_1.csv", "traites/clients_1.csv"), "a rename never overwrites")

	require.NoError(t, d.MkdirAll(ctx, "erreurs"))
	require.NoError(t, d.WriteFile(ctx, "erreurs/x.raison.txt", []byte("line 3: bad date\n")))
	got, err := os.ReadFile(filepath.Join(tg.localDir, "erreurs", "x.raison.txt"))
	require.NoError(t, err)
	require.Equal(t, "line 3: bad date\n", string(got))
	list, err = d.List(ctx, "erreurs")
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(list, func(fi fs.FileInfo) bool { return fi.Name() == "x.raison.txt" }))

	for _, bad := range []string{"../x", "/etc/passwd", "a/../../x", "a\\b"} {
		_, err := d.Stat(ctx, bad)
		require.ErrorIs(t, err, sftp.ErrInvalidName, bad)
	}
}
