package verify

import "time"

// Kind classifies a Finding. The values are stable: they appear in the
// JSON report.
type Kind string

const (
	// Checksum: bytes fail their checksum.
	Checksum Kind = "checksum"
	// Corrupt: bytes that pass their checksum (or have none) do not
	// decode, or break a rule of their format.
	Corrupt Kind = "corrupt"
	// Truncated: a file shorter than the MANIFEST records, or than its
	// own contents say.
	Truncated Kind = "truncated"
	// WrongSize: a table longer than the MANIFEST records.
	WrongSize Kind = "wrong-size"
	// Missing: a file the database needs is not there.
	Missing Kind = "missing"
	// Extra: a file the database did not write or does not reference
	// (the next open moves it to quarantine/).
	Extra Kind = "extra"
	// KeyOrder: keys out of order inside a table or across the tables of
	// a level.
	KeyOrder Kind = "key-order"
	// Overlap: two tables of a level >= 1 share user keys.
	Overlap Kind = "overlap"
	// MetaMismatch: a table disagrees with its MANIFEST entry or its own
	// properties (bounds, sequence numbers, counts).
	MetaMismatch Kind = "meta-mismatch"
	// SeqGap: log sequence numbers missing or going back inside a
	// segment or between consecutive history files.
	SeqGap Kind = "seq-gap"
	// NewerFormat: a file written by a newer format version than this
	// build reads; it was not checked.
	NewerFormat Kind = "newer-format"
	// Unreadable: an I/O error stopped the reading of a file.
	Unreadable Kind = "unreadable"

	// The kinds below are not damage.

	// Warning: something a crash explains, such as a torn tail at the end
	// of the newest log segment (the next open truncates it) or a
	// temporary file.
	Warning Kind = "warning"
	// Obsolete: a table the MANIFEST deleted that is still on disk (the
	// next open removes it).
	Obsolete Kind = "obsolete"
	// Quarantined: a file in quarantine/, listed and not checked.
	Quarantined Kind = "quarantined"
)

// Damage reports whether findings of kind k are damage.
func (k Kind) Damage() bool {
	switch k {
	case Warning, Obsolete, Quarantined:
		return false
	}
	return true
}

// Finding is one problem found in one file.
type Finding struct {
	Kind Kind `json:"kind"`
	// File is the file's path (the directory joined with its name).
	File string `json:"file"`
	// Offset is where in the file the damage starts; -1: the whole file,
	// or not known.
	Offset  int64  `json:"offset"`
	Message string `json:"message"`
	// Keys is the range of stored keys (namespace byte first, see "Keys"
	// in ARCHITECTURE.md) whose entries the damage may hold; nil: not
	// known or none.
	Keys *KeyRange `json:"keys,omitempty"`
	// Seqs are the sequence numbers whose operations the damage may hold.
	Seqs []SeqRange `json:"seqs,omitempty"`
}

// KeyRange is a range of stored keys. A nil bound is open.
type KeyRange struct {
	Smallest []byte `json:"smallest,omitempty"` // inclusive
	Largest  []byte `json:"largest,omitempty"`  // inclusive
}

// SeqRange is a range of sequence numbers, From to To inclusive.
type SeqRange struct {
	// Replica is the hex ID of the replica whose operation sequence
	// numbers these are. Empty: log sequence numbers of this database
	// (its local operations carry the same numbers under Report.Replica;
	// an imported operation keeps its origin's, in the archive's ranges).
	Replica string `json:"replica,omitempty"`
	// From is 0 when the start is not known (the damage starts a file
	// whose predecessor is gone).
	From uint64 `json:"from"`
	// To is 0 when the end is not known (the damage runs to the end of
	// the retained log).
	To uint64 `json:"to,omitempty"`
}

// Report is the result of a check.
type Report struct {
	Dir     string `json:"dir"`
	ColdDir string `json:"cold_dir,omitempty"`
	// Replica is the database's replica ID (hex), if REPLICA could be read.
	Replica string `json:"replica,omitempty"`
	// Rejoining: the directory holds a valid REJOINING marker: the
	// replica was restored in place and takes no local writes until it
	// has its own operations back from its peers (pluresdb.DB.FinishRejoin).
	Rejoining bool `json:"rejoining,omitempty"`
	// Manifest is the MANIFEST that CURRENT names, if it could be read.
	Manifest string `json:"manifest,omitempty"`
	// Clean is true when no finding is damage.
	Clean    bool      `json:"clean"`
	Findings []Finding `json:"findings"`
	// Counts are the findings per kind; Damage how many are damage.
	Counts map[Kind]int `json:"counts"`
	Damage int          `json:"damage"`
	// Files and Bytes say how much was checked, per file type in
	// FilesByType ("table", "log", "archive", "manifest", "vector",
	// "current", "replica", "rejoin").
	Files       int            `json:"files"`
	FilesByType map[string]int `json:"files_by_type"`
	Bytes       int64          `json:"bytes"`
	// Skipped lists the files of a fixed file set (DB.Verify) that were
	// removed by the running database before they were read (an archived
	// segment, a replaced vector checkpoint): not damage.
	Skipped  []string      `json:"skipped,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
}

// add records a finding.
func (r *Report) add(f Finding) {
	r.Findings = append(r.Findings, f)
}
