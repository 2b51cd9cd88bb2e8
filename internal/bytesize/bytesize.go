// Package bytesize reads sizes written for people: "500MB", "64MiB", "1GB" or a byte count.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

var units = []struct {
	suffix string
	mult   uint64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// Parse reads a size: a whole number with an optional unit (B, KB, MB, GB in powers of 1000,
// KiB, MiB, GiB in powers of 1024).
func Parse(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || (mult > 1 && v > ^uint64(0)/mult) {
		return 0, fmt.Errorf("%q: want a size such as 500MB or 64MiB", s)
	}
	return v * mult, nil
}
