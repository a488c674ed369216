package pluresdb

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// driftStream is a's export of one Put made with a clock running ahead of
// the wall clock by ahead, and the operation it holds.
func driftStream(t *testing.T, ahead time.Duration) ([]byte, oplog.Op) {
	t.Helper()
	a := openReplica(t, vfs.NewMem(), "/a")
	defer a.Close()
	must(t, a.Put([]byte("early"), []byte("ok")))
	at := time.Now().Add(ahead)
	a.ol.clock = oplog.NewClock(&oplog.ClockOptions{Wall: func() time.Time { return at }})
	must(t, a.Put([]byte("k"), []byte("from the future")))
	var buf bytes.Buffer
	if _, err := a.ExportChanges(&buf, nil); err != nil {
		t.Fatal(err)
	}
	s, err := oplog.ReadStream(bytes.NewReader(buf.Bytes()))
	must(t, err)
	return buf.Bytes(), s.Ops[len(s.Ops)-1]
}

// An operation two minutes ahead is refused under the default limit of a
// minute, with an error naming it; a larger MaxClockDrift, or none, takes
// it.
func TestImportClockDriftLimit(t *testing.T) {
	stream, op := driftStream(t, 2*time.Minute)
	open := func(drift time.Duration) *DB {
		db, err := Open("/b", &Options{FS: vfs.NewMem(), NoSync: true, MaxClockDrift: drift})
		must(t, err)
		return db
	}

	b := open(0)
	_, err := b.ImportChanges(bytes.NewReader(stream))
	if !errors.Is(err, oplog.ErrClockDrift) {
		t.Fatalf("default limit: import returned %v, want ErrClockDrift", err)
	}
	msg := err.Error()
	for _, want := range []string{
		op.Replica.String(),
		"operation " + itoa(op.Seq),
		op.HLC.Time().UTC().Format("2006-01-02T15:04"),
		"local clock " + time.Now().UTC().Format("2006-01-02T15:04"),
		"MaxClockDrift 1m0s",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if _, err := b.Get([]byte("early")); err == nil {
		t.Fatal("a refused stream was partly applied")
	}
	must(t, b.Close())

	for _, drift := range []time.Duration{5 * time.Minute, -1} {
		b := open(drift)
		if n, err := b.ImportChanges(bytes.NewReader(stream)); err != nil || n != 2 {
			t.Fatalf("MaxClockDrift %v: import = %d, %v", drift, n, err)
		}
		v, err := b.Get([]byte("k"))
		if err != nil || string(v) != "from the future" {
			t.Fatalf("MaxClockDrift %v: k = %q, %v", drift, v, err)
		}
		// The local clock moved past what it saw.
		if now := b.Now(); now <= op.HLC {
			t.Fatalf("MaxClockDrift %v: clock %v not past the imported %v", drift, now, op.HLC)
		}
		must(t, b.Close())
	}

	// A limit the operation is within: 3 minutes for 2 minutes ahead.
	b = open(3 * time.Minute)
	defer b.Close()
	if _, err := b.ImportChanges(bytes.NewReader(stream)); err != nil {
		t.Fatalf("MaxClockDrift 3m: %v", err)
	}
}

func TestMaxClockDriftValidated(t *testing.T) {
	for _, c := range []struct {
		drift time.Duration
		ok    bool
	}{{0, true}, {-1, true}, {time.Millisecond, true}, {time.Hour, true}, {time.Microsecond, false}, {1, false}} {
		err := (&Options{MaxClockDrift: c.drift}).Validate()
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("MaxClockDrift %v: Validate = %v", c.drift, err)
		}
	}
	if got := (&Options{}).withDefaults().MaxClockDrift; got != time.Minute {
		t.Errorf("default MaxClockDrift = %v, want 1m", got)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
