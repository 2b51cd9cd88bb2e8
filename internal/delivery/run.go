package delivery

import (
	"context"
	"errors"
	"sync"
)

// ErrSkipped is the error of a job Run did not send because an earlier job of its key failed;
// the outcome table classifies it Retry.
var ErrSkipped = errors.New("delivery skipped: an earlier job of its key failed")

// Job is one delivery. Key, when not empty, orders it after the earlier jobs of the same key.
type Job struct {
	Key  string
	Send func(ctx context.Context) error
}

// Run runs jobs for one endpoint concurrently, each through Do, except that jobs with the same
// non-empty Key run one after the other in slice order, and once a job of a key fails, that key's
// later jobs are not sent (their error is ErrSkipped). It returns one error per job, in order.
//
// Each key is a lane that one worker runs from start to end; a job without a key is a lane of its
// own. Run starts no more workers than the configured concurrency, so a large batch does not
// queue thousands of callers on the endpoint.
func (e *Engine) Run(ctx context.Context, endpoint string, jobs []Job) []error {
	errs := make([]error, len(jobs))
	lanes := lanesOf(jobs)
	next := make(chan []int, len(lanes))
	for _, l := range lanes {
		next <- l
	}
	close(next)

	var wg sync.WaitGroup
	for range min(e.cfg.Concurrency, len(lanes)) {
		wg.Go(func() {
			for lane := range next {
				var failed bool
				for _, i := range lane {
					if failed {
						errs[i] = ErrSkipped
						continue
					}
					errs[i] = e.Do(ctx, endpoint, jobs[i].Send)
					failed = errs[i] != nil && jobs[i].Key != ""
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// lanesOf groups the indexes of jobs by key, in order of first appearance; each job without a
// key is a lane of its own.
func lanesOf(jobs []Job) [][]int {
	var lanes [][]int
	byKey := make(map[string]int)
	for i, j := range jobs {
		if j.Key == "" {
			lanes = append(lanes, []int{i})
			continue
		}
		if l, ok := byKey[j.Key]; ok {
			lanes[l] = append(lanes[l], i)
			continue
		}
		byKey[j.Key] = len(lanes)
		lanes = append(lanes, []int{i})
	}
	return lanes
}
