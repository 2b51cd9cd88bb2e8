package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is what one benchmark prints: free lines (tables, notes), then its goals.
type report struct {
	lines []string
	goals []goal
}

// goal is one target of an issue and whether it was met.
type goal struct {
	what, got, want string
	ok              bool
}

func (r *report) addf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *report) check(what, got, want string, ok bool) {
	r.goals = append(r.goals, goal{what, got, want, ok})
}

// missed returns the goals not met.
func (r report) missed() []goal {
	var out []goal
	for _, g := range r.goals {
		if !g.ok {
			out = append(out, g)
		}
	}
	return out
}

func (r report) print() {
	for _, l := range r.lines {
		fmt.Println(l)
	}
	if len(r.goals) == 0 {
		return
	}
	fmt.Println()
	for _, g := range r.goals {
		verdict := "MISS"
		if g.ok {
			verdict = "PASS"
		}
		fmt.Printf("  %-4s  %-34s %-12s (goal %s)\n", verdict, g.what, g.got, g.want)
	}
}

// printMachine says where the figures were taken: they mean little without it.
func printMachine() {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	fmt.Printf("machine: %d CPUs (%s), %s %s/%s, %s\n", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		time.Now().Format(time.RFC3339))
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if load, err := strconv.ParseFloat(f[0], 64); err == nil {
			note := ""
			if load > 0.5*float64(runtime.NumCPU()) {
				note = " — the machine is busy: absolute figures are low and noisy, ratios less so"
			}
			fmt.Printf("load average (1 min) before the run: %.2f%s\n", load, note)
		}
	}
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median[T ~int64 | ~float64 | ~int](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// mb formats bytes in megabytes (10^6), the unit the goals are stated in.
func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
