package pipelines

import (
	"context"
	"fmt"
)

// PruningStore lists a namespace and deletes keys from it.
type PruningStore interface {
	ListState(ctx context.Context, ns string) (map[string][]byte, error)
	PutStates(ctx context.Context, ns string, kv map[string][]byte, deleted []string) error
}

// pruneState deletes the keys of ns that gone picks, in one transaction, and says how many.
func pruneState(ctx context.Context, st PruningStore, ns string, gone func(key string, v []byte) bool) (int, error) {
	all, err := st.ListState(ctx, ns)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", ns, err)
	}
	var keys []string
	for k, v := range all {
		if gone(k, v) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := st.PutStates(ctx, ns, nil, keys); err != nil {
		return 0, fmt.Errorf("prune %s: %w", ns, err)
	}
	return len(keys), nil
}
