// Package repair is the repairing half of plures-fsck: it makes a closed
// database directory that verify found damaged open again, keeping every
// byte and saying exactly what it could not keep. It never imports the
// root package; it reads and writes each file with the package that owns
// its format (lsm, wal, oplog, internal/archive).
//
// What it does (see "Repair" in ARCHITECTURE.md):
//
//   - it takes the directory's LOCK, so it never runs beside an open
//     database (ErrLocked otherwise), and checks the directory with
//     verify.Dir;
//   - every file it will not trust (a damaged table, a CURRENT or
//     MANIFEST it replaces, a damaged REPLICA) is moved into quarantine/,
//     under a name no other file there has, never deleted; every move is
//     in Result.Actions;
//   - a MANIFEST that cannot be read (or a missing CURRENT) is rebuilt
//     from the tables' own properties: every table that checks clean goes
//     to L0 when L0's order (largest sequence number first) reads the
//     newest entry of every key first, otherwise to levels 1 to 6 in the
//     order the keys they share require (order.go);
//   - a readable MANIFEST that lists a damaged or missing table is
//     rewritten without it, keeping every other table where it was;
//   - the log number of the new MANIFEST makes the next open replay every
//     retained log segment that holds a sequence number above the newest
//     one the clean tables hold, and none below: a record replayed on top
//     of a table that already holds it is not harmless, since compaction
//     folds merge operands into a value at the operand's sequence number
//     (TestReplayOfFoldedOperandsReadsWrong shows it);
//   - a damaged table whose keys reach into the op log's metadata is
//     never dropped unless the replay holds it: the replica's sequence
//     floor, clock mark and document format mark are there;
//   - a missing REPLICA is restored from the archives' change streams,
//     whose Source is the replica that wrote them; without one it refuses
//     and says that a peer or a backup is needed, and never makes a new ID;
//   - what is lost (the key and sequence ranges of a quarantined table
//     the log does not hold, the sequence ranges of damaged log records)
//     goes into Result.Lost with how to get it back; package refill
//     (which imports the root, as this one must not) brings lost key
//     ranges back from the op history, a peer or a backup.
package repair
