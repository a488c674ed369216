package replication

import (
	"fmt"
	"regexp"
	"time"
)

// Config tunes a Replicator. The zero value works: every field has a
// default (see withDefaults).
type Config struct {
	// Name names the JetStream stream (Name), its subjects
	// (Name.ops.<replica ID>) and the object store bucket of snapshots
	// (Name-snapshots). Every replica of one database uses the same Name.
	// Letters, digits, '-' and '_'. Default "pluresdb".
	Name string
	// Retention is the stream's age limit (its MaxAge): how long a
	// replica may be away and still catch up from the stream rather than
	// from a snapshot. Set it to the database's Options.Retention (the
	// engine does not expose the value); default 7 days, the engine's
	// default Retention.
	Retention time.Duration
	// StreamReplicas is the stream's replication factor in a NATS cluster
	// (1 on a single server). Default 1.
	StreamReplicas int
	// DuplicateWindow is the stream's deduplication window (Nats-Msg-Id).
	// Default 2 minutes.
	DuplicateWindow time.Duration
	// PublishInterval is how often the replicator looks for new durable
	// operations of its own to publish. Default 50ms.
	PublishInterval time.Duration
	// MaxMessageBytes bounds a published message: a larger export is cut
	// into several where transactions end. Default (and upper bound) the
	// connection's MaxPayload less 8 KiB for headers.
	MaxMessageBytes int
	// FetchBatch is how many messages a peer's consumer fetches at a time.
	// Default 64.
	FetchBatch int
	// DiscoverInterval is how often the replicator looks for new peers in
	// the stream and reads their latest positions (for Status). Default 1s.
	DiscoverInterval time.Duration
	// SnapshotInterval is how often the replicator publishes a state
	// snapshot to the object store. Negative: never. A selective replica
	// (Prefixes) never does.
	// Default 1 hour.
	SnapshotInterval time.Duration
	// NoBootstrap keeps a new replica (one holding no other replica's
	// operations) from loading the newest snapshot at Start; it then
	// replays the stream from its start. A replica refused as stale still
	// loads a snapshot.
	NoBootstrap bool
	// Prefixes, if set, limits what this replica imports to the keys with
	// one of these prefixes (selective replication, through the engine's
	// per-prefix cursors; see ExportChangesPrefix). It publishes all of its
	// own operations either way.
	Prefixes [][]byte
	// RetryBackoff is how long a peer's consumer waits after an error
	// before trying again. Default 500ms.
	RetryBackoff time.Duration
	// Logf, if set, receives a line for every error and refusal.
	Logf func(format string, args ...any)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c Config) withDefaults(maxPayload int64) (Config, error) {
	if c.Name == "" {
		c.Name = "pluresdb"
	}
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("replication: Config.Name %q: letters, digits, '-' and '_' only", c.Name)
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.StreamReplicas <= 0 {
		c.StreamReplicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	c.DuplicateWindow = min(c.DuplicateWindow, c.Retention)
	if c.PublishInterval <= 0 {
		c.PublishInterval = 50 * time.Millisecond
	}
	limit := int(maxPayload) - 8<<10
	if limit < 4<<10 {
		return c, fmt.Errorf("replication: the server's max payload (%d bytes) is too small", maxPayload)
	}
	if c.MaxMessageBytes <= 0 || c.MaxMessageBytes > limit {
		c.MaxMessageBytes = limit
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = 64
	}
	if c.DiscoverInterval <= 0 {
		c.DiscoverInterval = time.Second
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = time.Hour
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 500 * time.Millisecond
	}
	for i, p := range c.Prefixes {
		if len(p) == 0 {
			return c, fmt.Errorf("replication: Config.Prefixes[%d] is empty (leave Prefixes nil to import every key)", i)
		}
	}
	return c, nil
}
