// Package replication replicates a PluresDB database over NATS JetStream
// (see replication/README.md and "Replication" in ARCHITECTURE.md).
//
// Each replica publishes its own durable operations, as change streams
// (the format of pluresdb.DB.ExportChanges), to its own subject
// <Name>.ops.<replica ID> of one stream, and imports every other
// replica's subject through a durable pull consumer named after itself
// and the peer, acknowledging a message once its import is durable. The
// database's version vector, not a consumer's acknowledgements, says
// what a replica holds: a message it holds is skipped, one that starts
// past it moves the consumer back to the first message it lacks (a
// binary search over the stream), and when that message is gone (the
// stream's age limit), the newest state snapshot of another replica in
// the object store bucket <Name>-snapshots fills the hole.
package replication
