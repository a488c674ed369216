package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
)

// The op log's segment indexes. The engine keeps, in its metadata (the
// meta namespace of the tree, written through the log), an index of
// every retained history file: key oplog/seg/ + the segment number (8
// bytes, big endian), value the index (version 1: uvarint segment
// number, first and last log sequence numbers, two timestamps, archived
// 0/1, then per-replica ranges). Retention deletes an index before the
// files, and archiving writes the archive before the index says so: an
// index whose log segment and archive are both gone is lost history,
// which nothing else shows (the MANIFEST does not list history files).

// segIndexPrefix is the stored key prefix of a segment index: the meta
// namespace byte, then oplog/seg/.
var segIndexPrefix = []byte("\x00oplog/seg/")

// segIndexEntry is one version of a segment index found in a table or a
// log record.
type segIndexEntry struct {
	key   string
	seq   uint64
	del   bool
	value []byte
}

// tableSegIndexes turns the entries a table check collected (those
// under segIndexPrefix, from intact blocks: damage is the table check's
// to report) into segment index versions.
func tableSegIndexes(collected []lsm.TableEntry) []segIndexEntry {
	var out []segIndexEntry
	for _, e := range collected {
		ukey, seq, kind, ok := lsm.SplitInternalKey(e.Key)
		if !ok {
			continue
		}
		out = append(out, segIndexEntry{key: string(ukey), seq: uint64(seq), del: kind == lsm.KindDelete, value: e.Value})
	}
	return out
}

// recordSegIndexes appends the segment index entries of a log record.
func recordSegIndexes(h *historyResult, br batchrepr.Reader) {
	for i := uint64(0); ; i++ {
		e, ok, err := br.Next()
		if err != nil || !ok {
			return
		}
		if (e.Kind == lsm.KindSet || e.Kind == lsm.KindDelete) && bytes.HasPrefix(e.Key, segIndexPrefix) {
			h.segIdx = append(h.segIdx, segIndexEntry{key: string(e.Key), seq: uint64(br.Seq) + i,
				del: e.Kind == lsm.KindDelete, value: bytes.Clone(e.Value)})
		}
	}
}

// checkSegIndexes reports every history file that the newest version of
// its segment index lists but that is gone (neither the log segment nor
// its archive exists).
func (c *checker) checkSegIndexes(tables [][]*tableResult, history []*historyResult) {
	newest := map[string]segIndexEntry{}
	note := func(e segIndexEntry) {
		if cur, ok := newest[e.key]; !ok || e.seq > cur.seq {
			newest[e.key] = e
		}
	}
	for _, level := range tables {
		for _, res := range level {
			for _, e := range res.segIdx {
				note(e)
			}
		}
	}
	for _, h := range history {
		for _, e := range h.segIdx {
			note(e)
		}
	}
	keys := make([]string, 0, len(newest))
	for k := range newest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := newest[k]
		if e.del || len(k) != len(segIndexPrefix)+8 {
			continue
		}
		num := layout.FileNum(binary.BigEndian.Uint64([]byte(k[len(segIndexPrefix):])))
		first, last, archived, ok := decodeSegIndex(e.value)
		logPath := layout.Path(c.dir, layout.TypeLog, num)
		arcPath := layout.Path(c.dir, layout.TypeArchive, num)
		if !ok {
			c.rep.add(Finding{Kind: Corrupt, File: logPath, Offset: -1,
				Message: fmt.Sprintf("the op log's index of segment %s (metadata, seq %d) does not decode", num, e.seq)})
			continue
		}
		if c.exists(logPath) || c.exists(arcPath) {
			continue
		}
		path := logPath
		if archived {
			path = arcPath
		}
		c.rep.add(Finding{Kind: Missing, File: path, Offset: -1, Seqs: []SeqRange{{From: first, To: last}},
			Message: fmt.Sprintf("history file missing: the op log's index lists segment %s (log records %d..%d, archived %v), but neither it nor its archive exists; its operations are lost to exports and the change feed (a peer or a backup holds them)", num, first, last, archived)})
	}
}

func (c *checker) exists(path string) bool {
	_, err := c.fs.Stat(path)
	return err == nil
}

// decodeSegIndex reads the fields of a segment index the check needs.
func decodeSegIndex(b []byte) (first, last uint64, archived, ok bool) {
	if len(b) == 0 || b[0] != 1 {
		return 0, 0, false, false
	}
	p := b[1:]
	var vals [6]uint64
	for i := range vals {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, 0, false, false
		}
		vals[i], p = v, p[n:]
	}
	return vals[1], vals[2], vals[5] == 1, true
}

// checkLiveSegment reports the log segment a clean close recorded as the
// last one when it is gone: it held the writes since the last flush (the
// next open refuses the database). After a crash the MANIFEST may name a
// segment whose creation the crash cut short: no finding then.
func (c *checker) checkLiveSegment() {
	if c.ms == nil || c.ms.CleanClose == nil {
		return
	}
	cl := c.ms.CleanClose
	path := layout.Path(c.dir, layout.TypeLog, cl.LogNum)
	if c.exists(path) {
		return
	}
	c.rep.add(Finding{Kind: Missing, File: path, Offset: -1,
		Message: fmt.Sprintf("the last log segment at the clean close the MANIFEST records (%d bytes) is missing: the writes since the last flush are lost (a peer or a backup holds them); the database will not open", cl.LogSize)})
}
