package repair

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plures/pluresdb/internal/archive"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// maxArchiveRead bounds what is read of one archive to find its source.
const maxArchiveRead = 1 << 30

// repairReplica restores a missing or damaged REPLICA from the source
// the archives' change streams name. The replica's own log records do
// not carry its ID (local operations are implicit), so the archives are
// the record of it on disk; without one, repair refuses.
func (r *repairer) repairReplica() error {
	path := layout.Path(r.dir, layout.TypeReplica, 0)
	_, err := oplog.ReadReplicaFile(r.fs, path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errs.ErrNewerFormat):
		r.res.Refused = append(r.res.Refused, fmt.Sprintf("REPLICA is of a newer format than this build reads (%v)", err))
		return nil
	case errors.Is(err, os.ErrNotExist):
		if format, ferr := lsm.ManifestFormat(r.fs, r.dir); ferr == nil && format == 1 {
			// A database from before replica IDs: its next open makes one.
			return nil
		}
	case errors.Is(err, errs.ErrCorruption):
	default:
		return fmt.Errorf("repair: reading REPLICA: %w", err)
	}
	r.handled[path] = true

	ids, sources, err := r.archiveSources()
	if err != nil {
		return err
	}
	switch len(ids) {
	case 0:
		r.res.Refused = append(r.res.Refused, "REPLICA is missing or damaged, and no archive of this database names its replica ID "+
			"(its own log records do not carry it): repair does not invent one, since a new ID would make this replica's "+
			"operations look like another's to every peer. A peer or a backup is needed: copy REPLICA from a backup of this "+
			"database, or restore the database from a backup or a peer (plures-backup restore)")
		return nil
	case 1:
	default:
		var names []string
		for _, id := range ids {
			names = append(names, fmt.Sprintf("%s (%s)", id, strings.Join(sources[id], ", ")))
		}
		r.res.Refused = append(r.res.Refused, "REPLICA is missing or damaged, and the archives name different replicas: "+
			strings.Join(names, "; ")+": repair does not choose; a peer or a backup is needed")
		return nil
	}
	id := ids[0]
	if _, err := r.fs.Stat(path); err == nil {
		if _, err := r.quarantine(path, "damaged REPLICA, replaced by the ID the archives name"); err != nil {
			return err
		}
	}
	if err := oplog.WriteReplicaFile(r.fs, path, id); err != nil {
		return fmt.Errorf("repair: writing REPLICA: %w", err)
	}
	r.res.Replica = id.String()
	r.wrote(path, fmt.Sprintf("replica ID %s, the source of the change streams of %s", id, strings.Join(sources[id], ", ")))
	return nil
}

// archiveSources reads every archive of the directory and returns the
// replica IDs their change streams name as their source, with the
// archives naming each. A damaged archive is skipped (the check reports
// it).
func (r *repairer) archiveSources() ([]oplog.ReplicaID, map[oplog.ReplicaID][]string, error) {
	names, err := r.fs.List(r.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("repair: listing %s: %w", r.dir, err)
	}
	sources := map[oplog.ReplicaID][]string{}
	var ids []oplog.ReplicaID
	for _, name := range names {
		if t, _, ok := layout.Parse(name); !ok || t != layout.TypeArchive {
			continue
		}
		path := filepath.Join(r.dir, name)
		data, err := r.readAll(path)
		if err != nil {
			continue
		}
		a, err := archive.Decode(path, data)
		if err != nil || a.Stream.Header.Source.IsZero() {
			continue
		}
		src := a.Stream.Header.Source
		if _, ok := sources[src]; !ok {
			ids = append(ids, src)
		}
		sources[src] = append(sources[src], name)
	}
	slices.SortFunc(ids, func(a, b oplog.ReplicaID) int { return a.Compare(b) })
	return ids, sources, nil
}

// readAll reads a whole file.
func (r *repairer) readAll(path string) ([]byte, error) {
	f, err := r.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxArchiveRead))
}
