package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/backup"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// FuzzBackupManifest feeds arbitrary bytes to the backup manifest decoder,
// as they are and framed with a valid header, length and checksum (so
// the body decoder is reached): it must return a manifest or an error
// wrapping ErrCorruption or ErrNewerFormat, never panic, and a manifest
// it accepts must encode to bytes it accepts again, stably.
func FuzzBackupManifest(f *testing.F) {
	m := &backup.Manifest{ParentPath: "../full", Replica: oplog.NewReplicaID(), Time: time.Unix(0, 1700000000000000000),
		LastSeq: 9, VersionVector: oplog.VersionVector{oplog.NewReplicaID(): 3},
		Files: []backup.File{{Name: "000004.sst", Size: 10, Sum: 1, StoredSum: 1}, {Name: "REPLICA", Size: 37, Sum: 2, StoredSum: 2}}}
	m.Parent[0] = 1
	valid := m.Encode()
	f.Add(valid)
	m.Follow, m.Shipped = true, 7
	f.Add(m.Encode())
	f.Add(valid[9 : len(valid)-8])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(b []byte) {
			got, err := backup.DecodeManifest(b, "BACKUP")
			if err != nil {
				if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
					t.Fatalf("error wraps neither ErrCorruption nor ErrNewerFormat: %v", err)
				}
				return
			}
			enc := got.Encode()
			back, err := backup.DecodeManifest(enc, "BACKUP")
			if err != nil {
				t.Fatalf("re-encoded manifest refused: %v", err)
			}
			if !bytes.Equal(back.Encode(), enc) {
				t.Fatalf("encoding is not stable")
			}
		}
		check(data)
		for _, version := range []byte{1, 2} {
			framed := append([]byte("PLRSBKUP"), version)
			framed = binary.AppendUvarint(framed, uint64(len(data)))
			framed = append(framed, data...)
			check(binary.LittleEndian.AppendUint64(framed, xxhash.Sum64(framed)))
		}
	})
}
