package seed

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultValueSize is the value size WriteKeys and CheckKeys use.
const DefaultValueSize = 64

// txnOps stays under etcd's default --max-txn-ops of 128.
const txnOps = 128

// checkPage bounds one range read, so a large keyspace is checked in pieces.
const checkPage = 1000

// Key is the i-th key written under prefix. Zero-padded so the keys sort in write order.
func Key(prefix string, i int) string { return fmt.Sprintf("%s%08d", prefix, i) }

// Value is the value of the i-th key under prefix: it names its key, so a value that landed
// on the wrong key is detected, and is padded to size bytes.
func Value(prefix string, i, size int) string {
	head := fmt.Sprintf("%s%08d=", prefix, i)
	if len(head) >= size {
		return head
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(head)
	const pad = "0123456789abcdefghijklmnopqrstuvwxyz"
	for b.Len() < size {
		n := size - b.Len()
		if n > len(pad) {
			n = len(pad)
		}
		b.WriteString(pad[:n])
	}
	return b.String()
}

// WriteKeys writes n keys under prefix (Key(prefix, 0..n-1)) with DefaultValueSize values,
// in transactions of up to 128 puts.
func WriteKeys(ctx context.Context, cli *clientv3.Client, prefix string, n int) error {
	return WriteSizedKeys(ctx, cli, prefix, n, DefaultValueSize)
}

// WriteSizedKeys is WriteKeys with values of valueSize bytes; a batch stays under etcd's
// 1.5 MiB request limit as long as valueSize is at most 8 KiB.
func WriteSizedKeys(ctx context.Context, cli *clientv3.Client, prefix string, n, valueSize int) error {
	if valueSize > 8<<10 {
		return fmt.Errorf("write keys under %q: value size %d over 8 KiB", prefix, valueSize)
	}
	for start := 0; start < n; start += txnOps {
		end := min(start+txnOps, n)
		ops := make([]clientv3.Op, 0, end-start)
		for i := start; i < end; i++ {
			ops = append(ops, clientv3.OpPut(Key(prefix, i), Value(prefix, i, valueSize)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write keys %s..%s: %w", Key(prefix, start), Key(prefix, end-1), err)
		}
	}
	return nil
}

// CheckKeys reads every key under prefix (linearizable, in pages) and checks that the n keys
// WriteKeys wrote are all there with their values. The error counts what is missing or wrong
// and names the first few.
func CheckKeys(ctx context.Context, cli *clientv3.Client, prefix string, n int) error {
	return CheckSizedKeys(ctx, cli, prefix, n, DefaultValueSize)
}

// CheckSizedKeys is CheckKeys for keys written by WriteSizedKeys with valueSize.
func CheckSizedKeys(ctx context.Context, cli *clientv3.Client, prefix string, n, valueSize int) error {
	var missing, wrong []string
	var missingN, wrongN int
	note := func(list *[]string, count *int, key string) {
		*count++
		if len(*list) < 5 {
			*list = append(*list, key)
		}
	}
	next := 0 // index of the next expected key
	from := Key(prefix, 0)
	end := clientv3.GetPrefixRangeEnd(prefix)
	for next < n {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(checkPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return fmt.Errorf("read keys from %s: %w", from, err)
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			// Keys sort in index order, so every expected key below this one is missing.
			for next < n && Key(prefix, next) < k {
				note(&missing, &missingN, Key(prefix, next))
				next++
			}
			if next < n && Key(prefix, next) == k {
				if !bytes.Equal(kv.Value, []byte(Value(prefix, next, valueSize))) {
					note(&wrong, &wrongN, k)
				}
				next++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for ; next < n; next++ {
		note(&missing, &missingN, Key(prefix, next))
	}
	if missingN == 0 && wrongN == 0 {
		return nil
	}
	var parts []string
	if missingN > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d keys missing (first: %s)", missingN, n, strings.Join(missing, ", ")))
	}
	if wrongN > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d keys with a wrong value (first: %s)", wrongN, n, strings.Join(wrong, ", ")))
	}
	return fmt.Errorf("check keys under %q: %s", prefix, strings.Join(parts, "; "))
}
