package faults_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
)

// A broadcast killed with SIGKILL between its two batches, then run again: every number gets its
// message, and nobody gets two (each recipient's reference derives from the campaign and the
// number, and Bi-way answers a known reference with its first message).
func TestBroadcastKilledMidwayMessagesNobodyTwice(t *testing.T) {
	bin := daemonBinary(t)
	sim, err := biwaysim.Start(biwaysim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)

	const n = 10_050 // two batches: 10,000 then 50
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("to,prenom\n")
	numbers := make([]string, n)
	for i := range n {
		numbers[i] = fmt.Sprintf("+336%08d", 10_000_000+i)
		fmt.Fprintf(&csv, "06%08d,Camille\n", 10_000_000+i)
	}
	file := filepath.Join(dir, "numbers.csv")
	require.NoError(t, os.WriteFile(file, []byte(csv.String()), 0o600))
	env := []string{
		"PASSERELLE_DATA_DIR=" + filepath.Join(dir, "data"),
		"PASSERELLE_BIWAY_URL=" + sim.URL(),
		"PASSERELLE_BIWAY_API_KEY=" + sim.APIKey(),
		"PASSERELLE_LOG_LEVEL=error",
	}
	broadcast := func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "biway", "broadcast", "--template", "tpl_rentree", "--to-file", file)
		cmd.Env = env
		return cmd
	}

	// Each call waits 2 s before the partner takes it: the second batch is in flight when the
	// command is killed.
	sim.SetSlow(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := broadcast(ctx)
	var out strings.Builder
	first.Stdout, first.Stderr = &out, &out
	require.NoError(t, first.Start())
	deadline := time.Now().Add(60 * time.Second)
	for sim.Requests() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the simulator's count: a condition, not a pause
	}
	inFlight := sim.Requests() == 2
	require.NoError(t, first.Process.Kill())
	_ = first.Wait()
	// out is the killed command's: read only once it has exited.
	require.True(t, inFlight, "the second batch was not in flight; the command said: %s", out.String())
	sentBefore := len(sim.Submissions())
	t.Logf("killed with the second batch in flight; %d messages taken so far", sentBefore)

	sim.SetSlow(0)
	again := broadcast(ctx)
	b, err := again.CombinedOutput()
	require.NoError(t, err, "the same command again: %s", b)
	twice := 0
	for _, num := range numbers {
		switch sim.MessagesTo(num) {
		case 1:
		case 0:
			t.Errorf("%s got no message", num)
		default:
			twice++
		}
	}
	require.Zero(t, twice, "numbers messaged twice")
	require.Len(t, sim.Submissions(), n, "one message per number")
	t.Logf("FAULT kill -9 during a broadcast        posted %5d  messaged %5d  twice %d", n, len(sim.Submissions()), twice)
}
