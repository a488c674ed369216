// Command plures-sync runs a replicator for a database directory against
// a NATS server with JetStream (see replication/README.md):
//
//	plures-sync -db DIR [-nats URL | -embedded [-listen HOST:PORT] [-store DIR]]
//	            [-name NAME] [-retention DUR] [-prefix P]... [-snapshot-every DUR]
//	            [-put KEY=VALUE]... [-status-every DUR] [-for DUR] [-json]
//
// It runs until interrupted (or for -for), printing the replicator's
// status every -status-every and once at the end, as text or as one JSON
// object a line (-json). -embedded starts an in-process NATS server with
// JetStream (for one machine, or tests) instead of connecting to -nats.
// -put writes documents before replication starts (to try it out). Exit
// status 0 done, 1 error, 2 usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/replication"
	"github.com/plures/pluresdb/replication/embedded"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plures-sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("db", "", "database directory (created if missing)")
	url := fs.String("nats", nats.DefaultURL, "NATS server URL")
	emb := fs.Bool("embedded", false, "start an in-process NATS server with JetStream instead of connecting to -nats")
	listen := fs.String("listen", "127.0.0.1:4222", "with -embedded: the address clients connect to")
	store := fs.String("store", "", "with -embedded: JetStream's directory (default: a temporary one, removed at exit)")
	name := fs.String("name", "", "stream, subject and bucket name (default pluresdb)")
	retention := fs.Duration("retention", 0, "the stream's age limit; set it to the database's Retention (default 7 days)")
	snapEvery := fs.Duration("snapshot-every", 0, "publish a state snapshot this often (default 1h; negative: never)")
	statusEvery := fs.Duration("status-every", 10*time.Second, "print the status this often (0: only at the end)")
	runFor := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	asJSON := fs.Bool("json", false, "print the status as JSON, one object a line")
	var prefixes, puts multi
	fs.Var(&prefixes, "prefix", "import only keys with this prefix (repeatable)")
	fs.Var(&puts, "put", "write KEY=VALUE before starting (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "plures-sync: -db DIR is required, and there are no arguments")
		fs.Usage()
		return 2
	}
	for _, p := range puts {
		if k, _, ok := strings.Cut(p, "="); !ok || k == "" {
			fmt.Fprintf(stderr, "plures-sync: -put %q: want KEY=VALUE\n", p)
			return 2
		}
	}
	if err := sync(ctx, *dir, *url, *emb, *listen, *store, replication.Config{
		Name: *name, Retention: *retention, SnapshotInterval: *snapEvery,
		Prefixes: toBytes(prefixes),
		Logf:     func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) },
	}, puts, *statusEvery, *runFor, *asJSON, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "plures-sync: %v\n", err)
		return 1
	}
	return 0
}

func toBytes(ss []string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

func sync(ctx context.Context, dir, url string, emb bool, listen, store string, cfg replication.Config,
	puts []string, statusEvery, runFor time.Duration, asJSON bool, stdout, stderr io.Writer) (err error) {
	if emb {
		if store == "" {
			tmp, err := os.MkdirTemp("", "plures-sync-js-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			store = tmp
		}
		srv, err := embedded.Start(embedded.Options{StoreDir: store, Listen: listen})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		url = srv.URL()
		fmt.Fprintf(stderr, "plures-sync: embedded NATS server with JetStream at %s (store %s)\n", url, store)
	}
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	for _, p := range puts {
		k, v, _ := strings.Cut(p, "=")
		if err := db.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	nc, err := nats.Connect(url, nats.Name("plures-sync "+db.ReplicaID().String()),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(stderr, "plures-sync: nats: %v\n", err)
		}))
	if err != nil {
		return err
	}
	defer nc.Close()
	rep, err := replication.Start(db, nc, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "plures-sync: replica %s replicating %s through %s\n", db.ReplicaID(), dir, url)
	if runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	}
	var tick <-chan time.Time
	if statusEvery > 0 {
		t := time.NewTicker(statusEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			if err := printStatus(stdout, rep.Status(), asJSON); err != nil {
				return errors.Join(err, rep.Stop())
			}
		case <-ctx.Done():
			stopErr := rep.Stop()
			return errors.Join(stopErr, printStatus(stdout, rep.Status(), asJSON))
		}
	}
}

func printStatus(w io.Writer, s replication.Status, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	fmt.Fprintf(w, "%s replica %s: local %d, published %d; in %d ops (%d B), out %d ops (%d B); refusals %d, errors %d\n",
		time.Now().Format(time.RFC3339), s.Replica, s.Local, s.Published,
		s.Metrics.OperationsIn, s.Metrics.BytesIn, s.Metrics.OperationsOut, s.Metrics.BytesOut,
		s.Metrics.Refusals, s.Metrics.Errors)
	if s.PublishError != "" {
		fmt.Fprintf(w, "  publish error: %s\n", s.PublishError)
	}
	for _, p := range s.Peers {
		fmt.Fprintf(w, "  peer %s: imported %d of %d, lag %d seq / %.1fs, refusals %d, errors %d",
			p.Replica, p.Imported, p.Published, p.LagSeq, p.LagSeconds, p.Refusals, p.Errors)
		if p.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", p.LastError)
		}
		fmt.Fprintln(w)
	}
	return nil
}
