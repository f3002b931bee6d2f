package host

import (
	"context"
	"sync"
)

// ForEach calls fn for every name, at most concurrency at a time (1 when concurrency < 1),
// and returns the errors by name; an empty map means every call succeeded. Once ctx is done,
// names not yet started get ctx's error without fn being called.
func ForEach(ctx context.Context, names []string, concurrency int, fn func(ctx context.Context, name string) error) map[string]error {
	_, errs := Collect(ctx, names, concurrency, func(ctx context.Context, name string) (struct{}, error) {
		return struct{}{}, fn(ctx, name)
	})
	return errs
}

// Collect is ForEach for calls that return a value: the values of the calls that succeeded,
// and the errors of those that did not, by name.
func Collect[T any](ctx context.Context, names []string, concurrency int, fn func(ctx context.Context, name string) (T, error)) (map[string]T, map[string]error) {
	if concurrency < 1 {
		concurrency = 1
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		vals = map[string]T{}
		errs = map[string]error{}
		sem  = make(chan struct{}, concurrency)
	)
	for _, name := range names {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			errs[name] = ctx.Err()
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, err := fn(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[name] = err
			} else {
				vals[name] = v
			}
		}()
	}
	wg.Wait()
	return vals, errs
}
