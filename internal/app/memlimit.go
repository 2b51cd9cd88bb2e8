package app

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/passerelle/passerelle/internal/config"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit from PASSERELLE_MEMORY_LIMIT, unless
// GOMEMLIMIT is set (the runtime has applied it). The embedded nats-server keeps each 8 MB message
// block a consumer reads for 10 s after its last use, held only weakly once flushed: without a
// limit the GC lets them pile up to twice the live heap; near the limit it collects them. The
// stages' hold during a webhook burst (pipelines.Yield) keeps a burst from piling them up; the
// limit bounds what the hold does not cover: a burst longer than it, a large replay. It returns
// the limit in force, 0 for none.
func ApplyMemoryLimit(setting string, log *slog.Logger) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		limit := debug.SetMemoryLimit(-1)
		log.Info("memory limit", "bytes", limit, "from", "GOMEMLIMIT")
		return limit
	}
	v, err := config.ParseMemoryLimit(setting) // validated with the configuration
	if err != nil || v == 0 || v > math.MaxInt64 {
		debug.SetMemoryLimit(math.MaxInt64)
		log.Info("memory limit", "bytes", "off", "from", "PASSERELLE_MEMORY_LIMIT")
		return 0
	}
	debug.SetMemoryLimit(int64(v))
	log.Info("memory limit", "bytes", v, "from", "PASSERELLE_MEMORY_LIMIT")
	return int64(v)
}
