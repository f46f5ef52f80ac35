// Command kubeload drives an etcd v3 server the way kube-apiserver's storage
// layer does (k8s.io/apiserver/pkg/storage/etcd3): creates guarded by
// mod_revision == 0, updates and deletes guarded by the object's last
// mod_revision, linearizable gets, paginated lists pinned to one revision,
// and prefix watches with prev_kv. Written in Go with clientv3 so that the
// load generator is not the bottleneck (bench/brain.ts runs it).
//
// It prints one JSON object on stdout: ops, errors, seconds, opsPerSecond,
// p50Ms, p99Ms, and the first error's text (so a server that refuses an
// operation shows why).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// source is a hash of this program's source, stamped by scripts/setup.sh.
var source = "unknown"

type options struct {
	endpoints string
	clients   int
	conns     int
	prefix    string
	valSize   int
	total     int
	objects   int
	pageSize  int64
	watchers  int
	rate      int
}

type result struct {
	Ops          int     `json:"ops"`
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	OpsPerSecond float64 `json:"opsPerSecond"`
	P50Ms        float64 `json:"p50Ms"`
	P99Ms        float64 `json:"p99Ms"`
	FirstError   string  `json:"firstError,omitempty"`
	// watch only: events each watcher should have seen but did not.
	Missed int `json:"missed,omitempty"`
}

func main() {
	var o options
	flags := flag.NewFlagSet("kubeload", flag.ExitOnError)
	flags.StringVar(&o.endpoints, "endpoints", "127.0.0.1:2379", "the server's client addresses, comma-separated (a replica set: every member)")
	flags.IntVar(&o.clients, "clients", 32, "concurrent clients")
	flags.IntVar(&o.conns, "conns", 8, "gRPC connections the clients share")
	flags.StringVar(&o.prefix, "prefix", "/registry/benchobjects/default/", "the collection's key prefix")
	flags.IntVar(&o.valSize, "val-size", 1024, "bytes per object")
	flags.IntVar(&o.total, "total", 10000, "operations to time")
	flags.IntVar(&o.objects, "objects", 5000, "objects in the collection (update, get, watch)")
	flags.Int64Var(&o.pageSize, "page", 500, "list page size")
	flags.IntVar(&o.watchers, "watchers", 10, "prefix watchers (watch)")
	flags.IntVar(&o.rate, "rate", 500, "updates per second while watching (watch)")
	var seedKey string
	flags.StringVar(&seedKey, "key", "", "the key to write (seed)")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeload create|update|delete|get|list|watch|seed [flags]")
		os.Exit(2)
	}
	command := os.Args[1]
	if command == "version" {
		fmt.Println("kubeload", source)
		return
	}
	_ = flags.Parse(os.Args[2:])
	if command == "seed" && seedKey == "" {
		fail(errors.New("seed needs --key"))
	}

	clients, closeAll, err := connect(o)
	if err != nil {
		fail(err)
	}
	defer closeAll()
	value := make([]byte, o.valSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}

	var out result
	switch command {
	case "seed":
		err = seed(clients[0], seedKey, value)
	case "create":
		out, err = create(o, clients, value)
	case "update":
		out, err = update(o, clients, value)
	case "delete":
		out, err = remove(o, clients)
	case "get":
		out, err = get(o, clients)
	case "list":
		out, err = list(o, clients)
	case "watch":
		out, err = watch(o, clients, value)
	default:
		err = fmt.Errorf("unknown command %q", command)
	}
	if err != nil {
		fail(err)
	}
	if command != "seed" {
		_ = json.NewEncoder(os.Stdout).Encode(out)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "kubeload: %v\n", err)
	os.Exit(1)
}

func connect(o options) ([]*clientv3.Client, func(), error) {
	conns := make([]*clientv3.Client, o.conns)
	for i := range conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   strings.Split(o.endpoints, ","),
			DialTimeout: 10 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c
	}
	clients := make([]*clientv3.Client, o.clients)
	for i := range clients {
		clients[i] = conns[i%len(conns)]
	}
	return clients, func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}, nil
}

func objectKey(o options, i int) string { return fmt.Sprintf("%sobject-%08d", o.prefix, i) }

// seed writes one key whatever the server accepts: a guarded create, or an
// update of the existing key (kine refuses a plain Put of a new key in a Txn).
func seed(c *clientv3.Client, key string, value []byte) error {
	ctx := context.Background()
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil || resp.Succeeded {
		return err
	}
	current := resp.Responses[0].GetResponseRange().Kvs[0].ModRevision
	_, err = c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", current)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	return err
}

// timed runs op(client, i) for i in [0, total) over all clients and measures each call.
func timed(o options, clients []*clientv3.Client, total int, op func(client int, i int) error) result {
	var next atomic.Int64
	var errCount atomic.Int64
	var firstError atomic.Value
	latencies := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	started := time.Now()
	for ci := range clients {
		wg.Add(1)
		go func(ci int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				t0 := time.Now()
				if err := op(ci, i); err != nil {
					errCount.Add(1)
					firstError.CompareAndSwap(nil, err.Error())
					continue
				}
				latencies[ci] = append(latencies[ci], time.Since(t0))
			}
		}(ci)
	}
	wg.Wait()
	seconds := time.Since(started).Seconds()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	out := summarize(all)
	out.Ops = total
	out.Errors = errCount.Load()
	out.Seconds = seconds
	out.OpsPerSecond = float64(len(all)) / seconds
	if first, ok := firstError.Load().(string); ok {
		out.FirstError = first
	}
	return out
}

func summarize(latencies []time.Duration) result {
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	at := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(latencies)))
		if i >= len(latencies) {
			i = len(latencies) - 1
		}
		return float64(latencies[i].Microseconds()) / 1000
	}
	return result{P50Ms: at(0.50), P99Ms: at(0.99)}
}

// The apiserver's create: put only if the key does not exist.
func create(o options, clients []*clientv3.Client, value []byte) (result, error) {
	return timed(o, clients, o.total, func(c, i int) error {
		key := objectKey(o, i)
		resp, err := clients[c].Txn(context.Background()).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(value))).Commit()
		if err == nil && !resp.Succeeded {
			err = fmt.Errorf("create %s: already exists", key)
		}
		return err
	}), nil
}

// revisions reads the collection's current mod_revisions page by page (not timed).
func revisions(o options, c *clientv3.Client) (map[string]int64, error) {
	out := map[string]int64{}
	key := o.prefix
	end := clientv3.GetPrefixRangeEnd(o.prefix)
	for {
		resp, err := c.Get(context.Background(), key, clientv3.WithRange(end), clientv3.WithLimit(1000))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = kv.ModRevision
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// ownedKeys splits the existing objects between clients, as updates to
// different objects from different controllers: no two clients race on one
// key, so every guarded update is expected to succeed.
func ownedKeys(o options, clients []*clientv3.Client) ([][]string, map[string]int64, error) {
	revs, err := revisions(o, clients[0])
	if err != nil {
		return nil, nil, err
	}
	if len(revs) < o.objects {
		return nil, nil, fmt.Errorf("the collection holds %d objects, %d needed (run create first)", len(revs), o.objects)
	}
	owned := make([][]string, len(clients))
	for i := 0; i < o.objects; i++ {
		owned[i%len(clients)] = append(owned[i%len(clients)], objectKey(o, i))
	}
	return owned, revs, nil
}

// guardedUpdate is the apiserver's GuaranteedUpdate: put if mod_revision is
// unchanged, else read the current object (and retry, as the apiserver does).
func guardedUpdate(c *clientv3.Client, key string, value []byte, rev *int64) error {
	resp, err := c.Txn(context.Background()).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", *rev)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			*rev = kvs[0].ModRevision
		}
		return fmt.Errorf("update %s: mod_revision changed", key)
	}
	*rev = resp.Header.Revision
	return nil
}

func update(o options, clients []*clientv3.Client, value []byte) (result, error) {
	owned, revs, err := ownedKeys(o, clients)
	if err != nil {
		return result{}, err
	}
	var mu sync.Mutex // revs is shared; each key is only touched by its owner
	perClient := make([]int, len(clients))
	return timed(o, clients, o.total, func(c, _ int) error {
		keys := owned[c]
		key := keys[perClient[c]%len(keys)]
		perClient[c]++
		mu.Lock()
		rev := revs[key]
		mu.Unlock()
		err := guardedUpdate(clients[c], key, value, &rev)
		mu.Lock()
		revs[key] = rev
		mu.Unlock()
		return err
	}), nil
}

// The apiserver's delete: delete if mod_revision is unchanged, else read.
func remove(o options, clients []*clientv3.Client) (result, error) {
	revs, err := revisions(o, clients[0])
	if err != nil {
		return result{}, err
	}
	keys := make([]string, 0, len(revs))
	for key := range revs {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	total := min(o.total, len(keys))
	return timed(o, clients, total, func(c, i int) error {
		key := keys[i]
		resp, err := clients[c].Txn(context.Background()).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", revs[key])).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key)).Commit()
		if err == nil && !resp.Succeeded {
			err = fmt.Errorf("delete %s: mod_revision changed", key)
		}
		return err
	}), nil
}

// A linearizable get of one object (the apiserver's GET with no resourceVersion).
func get(o options, clients []*clientv3.Client) (result, error) {
	rngs := make([]*rand.Rand, len(clients))
	for i := range rngs {
		rngs[i] = rand.New(rand.NewSource(int64(i)))
	}
	return timed(o, clients, o.total, func(c, _ int) error {
		key := objectKey(o, rngs[c].Intn(o.objects))
		resp, err := clients[c].Get(context.Background(), key)
		if err == nil && len(resp.Kvs) != 1 {
			err = fmt.Errorf("get %s: %d objects", key, len(resp.Kvs))
		}
		return err
	}), nil
}

// One op is one page of a paginated list pinned to the revision of the
// first page, the way the apiserver serves ?limit=500&continue=...
func list(o options, clients []*clientv3.Client) (result, error) {
	head, err := clients[0].Get(context.Background(), o.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return result{}, err
	}
	if head.Count < int64(o.objects) {
		return result{}, fmt.Errorf("the collection holds %d objects, %d needed", head.Count, o.objects)
	}
	revision := head.Header.Revision
	end := clientv3.GetPrefixRangeEnd(o.prefix)
	cursors := make([]string, len(clients))
	for i := range cursors {
		cursors[i] = o.prefix
	}
	return timed(o, clients, o.total, func(c, _ int) error {
		resp, err := clients[c].Get(context.Background(), cursors[c],
			clientv3.WithRange(end), clientv3.WithLimit(o.pageSize), clientv3.WithRev(revision))
		if err != nil {
			return err
		}
		if int64(len(resp.Kvs)) != o.pageSize && resp.More {
			return fmt.Errorf("list: a page of %d objects with more to come", len(resp.Kvs))
		}
		if resp.More {
			cursors[c] = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		} else {
			cursors[c] = o.prefix // start the next walk
		}
		return nil
	}), nil
}

// Prefix watchers with prev_kv see guarded updates made at a fixed rate; each
// event is timed from the writer receiving its acknowledgement to a watcher
// receiving the event (0 when the event arrived first). Every watcher must
// see every revision: the ones it did not are reported as missed.
func watch(o options, clients []*clientv3.Client, value []byte) (result, error) {
	owned, revs, err := ownedKeys(o, clients)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type delivery struct {
		mu   sync.Mutex
		seen map[int64]time.Time
	}
	deliveries := make([]*delivery, o.watchers)
	var ready sync.WaitGroup
	var watchErr atomic.Value
	for w := range deliveries {
		d := &delivery{seen: map[int64]time.Time{}}
		deliveries[w] = d
		ready.Add(1)
		// Each watcher on its own connection's stream, like separate apiservers.
		wch := clients[w%len(clients)].Watch(clientv3.WithRequireLeader(ctx), o.prefix,
			clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
		go func() {
			first := true
			for resp := range wch {
				if first {
					first = false
					ready.Done()
				}
				if err := resp.Err(); err != nil {
					watchErr.CompareAndSwap(nil, err.Error())
					continue
				}
				now := time.Now()
				d.mu.Lock()
				for _, event := range resp.Events {
					if event.PrevKv == nil {
						watchErr.CompareAndSwap(nil, "an update event without prev_kv")
					}
					d.seen[event.Kv.ModRevision] = now
				}
				d.mu.Unlock()
			}
			if first {
				ready.Done()
			}
		}()
	}
	ready.Wait()

	limiter := rate.NewLimiter(rate.Limit(o.rate), 1)
	var mu sync.Mutex
	acked := map[int64]time.Time{}
	perClient := make([]int, len(clients))
	writes := timed(o, clients, o.total, func(c, _ int) error {
		if err := limiter.Wait(ctx); err != nil {
			return err
		}
		keys := owned[c]
		key := keys[perClient[c]%len(keys)]
		perClient[c]++
		mu.Lock()
		rev := revs[key]
		mu.Unlock()
		err := guardedUpdate(clients[c], key, value, &rev)
		now := time.Now()
		mu.Lock()
		revs[key] = rev
		if err == nil {
			acked[rev] = now
		}
		mu.Unlock()
		return err
	})

	// Wait (bounded) for every watcher to see every acknowledged revision.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		complete := true
		for _, d := range deliveries {
			d.mu.Lock()
			for rev := range acked {
				if _, ok := d.seen[rev]; !ok {
					complete = false
					break
				}
			}
			d.mu.Unlock()
			if !complete {
				break
			}
		}
		if complete {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()

	var latencies []time.Duration
	missed := 0
	for _, d := range deliveries {
		d.mu.Lock()
		for rev, ackAt := range acked {
			at, ok := d.seen[rev]
			if !ok {
				missed++
				continue
			}
			latencies = append(latencies, max(0, at.Sub(ackAt)))
		}
		d.mu.Unlock()
	}
	out := summarize(latencies)
	out.Ops = len(latencies)
	out.Errors = writes.Errors
	out.FirstError = writes.FirstError
	if first, ok := watchErr.Load().(string); ok && out.FirstError == "" {
		out.FirstError = first
	}
	out.Seconds = writes.Seconds
	out.OpsPerSecond = float64(len(latencies)) / writes.Seconds
	out.Missed = missed
	if len(acked) == 0 && out.FirstError == "" {
		out.FirstError = errors.New("no write was acknowledged").Error()
	}
	return out, nil
}
