package lsm

import (
	"errors"
	"fmt"
	"os"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// ManifestState is what the live manifest of a database says, read without
// writing anything: the version, the next file number it recorded, and the
// tables its edits deleted. The DB reads it before LoadVersionSet (which
// starts a new manifest and drops the old one, and with it the record of
// deletions) to check the tables and to tell obsolete files from files
// that may hold data.
type ManifestState struct {
	ManifestNum layout.FileNum // the manifest CURRENT names
	Version     *Version       // not installed: no references, no VersionSet
	// NextFileNum is the next file number the manifest recorded: every
	// number below it was handed out before its last edit.
	NextFileNum layout.FileNum
	// Deleted holds the tables an edit of the manifest removed and no
	// later edit added back: obsolete, their contents being in the
	// tables that replaced them.
	Deleted map[layout.FileNum]struct{}
	// Torn: the manifest ends in a torn record (a crash during an edit),
	// ignored.
	Torn bool
	// LogNum and LastSeq are the last values the edits recorded: log
	// segments below LogNum hold only data that is in tables, and every
	// sequence number up to LastSeq was handed out before the last edit.
	LogNum  layout.FileNum
	LastSeq SeqNum
	// CleanClose is set when the last edit recorded a clean close.
	CleanClose *CleanClose
}

// ReadManifestState reads CURRENT and the manifest it names, as
// LoadVersionSet does, and returns what they say. It writes nothing.
// Errors are LoadVersionSet's.
func ReadManifestState(fs vfs.FS, dir string) (*ManifestState, error) {
	num, err := readCurrent(fs, dir)
	if err != nil {
		return nil, err
	}
	st, err := replayManifest(fs, dir, num)
	if err != nil {
		return nil, err
	}
	v, err := st.builder.build()
	if err != nil {
		return nil, errs.Corruptf(layout.Path(dir, layout.TypeManifest, num), -1, "%v", err)
	}
	ms := &ManifestState{
		ManifestNum: num,
		Version:     v,
		NextFileNum: st.nextFileNum,
		Deleted:     make(map[layout.FileNum]struct{}, len(st.builder.deleted)),
		Torn:        st.torn,
		LogNum:      st.logNum,
		LastSeq:     st.lastSeq,
		CleanClose:  st.cleanClose,
	}
	live := v.tableNums()
	for n := range st.builder.deleted {
		if _, ok := live[n]; !ok {
			ms.Deleted[n] = struct{}{}
		}
	}
	return ms, nil
}

// tableNums returns the numbers of v's tables.
func (v *Version) tableNums() map[layout.FileNum]struct{} {
	out := make(map[layout.FileNum]struct{})
	for _, files := range v.Levels {
		for _, f := range files {
			out[f.Num] = struct{}{}
		}
	}
	return out
}

// CheckTables checks that every table of the version is where its tier
// says (dir, or coldDir for a cold table when coldDir is set) and has the
// size the manifest recorded. It reads no table, only the directory
// entries. A table missing or of the wrong size gives an error wrapping
// errs.ErrCorruption that names the file: reads of it would fail, or
// worse, read a different table under its number, so the database must
// not open until the file is restored (from a backup, or from the
// quarantine folder it was moved to).
func (ms *ManifestState) CheckTables(fs vfs.FS, dir, coldDir string) error {
	for _, files := range ms.Version.Levels {
		for _, f := range files {
			if err := checkTableFile(fs, dir, coldDir, f); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkTableFile(fs vfs.FS, dir, coldDir string, f *FileMeta) error {
	path := layout.Path(TableDir(dir, coldDir, f.Cold), layout.TypeTable, f.Num)
	fi, err := fs.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		// The other tier's directory: moved by hand, or Options.ColdDir
		// changed between opens.
		other := dir
		if TableDir(dir, coldDir, f.Cold) == dir {
			other = coldDir
		}
		where := ""
		if other != "" && other != TableDir(dir, coldDir, f.Cold) {
			if _, err := fs.Stat(layout.Path(other, layout.TypeTable, f.Num)); err == nil {
				where = fmt.Sprintf(" (a file of that name is in %s: is Options.ColdDir right?)", other)
			}
		}
		return errs.Corruptf(path, -1, "table %s the manifest lists is missing%s", f.Num, where)
	}
	if err != nil {
		return fmt.Errorf("lsm: checking table %s: %w", path, err)
	}
	if uint64(fi.Size()) != f.Size {
		return errs.Corruptf(path, -1, "table %s is %d bytes, the manifest recorded %d", f.Num, fi.Size(), f.Size)
	}
	return nil
}
