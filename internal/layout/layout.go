// Package layout names the files of a database directory.
//
//	CURRENT          name of the live MANIFEST, written atomically (temp + rename)
//	LOCK             empty; flock'd while a process has the database open
//	REPLICA          this replica's ID
//	REJOINING        present while a replica restored in place catches up on its own operations (oplog.WriteRejoinFile)
//	MANIFEST-000007  version edits (internal/record framing)
//	000012.log       WAL / op-log segment
//	000013.sst       sorted table
//	000014.tmp       a file being written; removed on open
//	000015.hnsw      a vector index graph checkpoint (see the root package's vector.go)
//	000016.oparc     the cold archive of op-log segment 000016.log (its operations as a zstd change stream, with their log positions)
//
// File numbers come from one counter kept in the MANIFEST, so a number names
// exactly one file of one kind for the life of the database.
package layout

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// FileNum identifies a log segment, table or manifest.
type FileNum uint64

func (n FileNum) String() string { return fmt.Sprintf("%06d", uint64(n)) }

// FileType is the kind of a file in a database directory.
type FileType int

const (
	TypeUnknown FileType = iota
	TypeLog
	TypeTable
	TypeManifest
	TypeCurrent
	TypeLock
	TypeReplica
	TypeTemp
	TypeVectorGraph
	TypeArchive
	TypeRejoin
)

// Name returns the base name of a file of type t with number n (n is
// ignored for CURRENT, LOCK, REPLICA and REJOINING).
func Name(t FileType, n FileNum) string {
	switch t {
	case TypeLog:
		return n.String() + ".log"
	case TypeTable:
		return n.String() + ".sst"
	case TypeManifest:
		return "MANIFEST-" + n.String()
	case TypeCurrent:
		return "CURRENT"
	case TypeLock:
		return "LOCK"
	case TypeReplica:
		return "REPLICA"
	case TypeRejoin:
		return "REJOINING"
	case TypeTemp:
		return n.String() + ".tmp"
	case TypeVectorGraph:
		return n.String() + ".hnsw"
	case TypeArchive:
		return n.String() + ".oparc"
	}
	panic("layout: unknown file type")
}

// Path joins dir and Name(t, n).
func Path(dir string, t FileType, n FileNum) string { return filepath.Join(dir, Name(t, n)) }

// Parse reports the type and number of a base file name; ok is false for
// names the engine did not write.
func Parse(name string) (t FileType, n FileNum, ok bool) {
	switch name {
	case "CURRENT":
		return TypeCurrent, 0, true
	case "LOCK":
		return TypeLock, 0, true
	case "REPLICA":
		return TypeReplica, 0, true
	case "REJOINING":
		return TypeRejoin, 0, true
	}
	if rest, found := strings.CutPrefix(name, "MANIFEST-"); found {
		v, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return TypeUnknown, 0, false
		}
		return TypeManifest, FileNum(v), true
	}
	i := strings.IndexByte(name, '.')
	if i <= 0 {
		return TypeUnknown, 0, false
	}
	v, err := strconv.ParseUint(name[:i], 10, 64)
	if err != nil {
		return TypeUnknown, 0, false
	}
	switch name[i+1:] {
	case "log":
		return TypeLog, FileNum(v), true
	case "sst":
		return TypeTable, FileNum(v), true
	case "tmp":
		return TypeTemp, FileNum(v), true
	case "hnsw":
		return TypeVectorGraph, FileNum(v), true
	case "oparc":
		return TypeArchive, FileNum(v), true
	}
	return TypeUnknown, 0, false
}
