package pluresdb

// vectorSet holds the open vector indexes of a DB.
type vectorSet struct{}

// close checkpoints and releases every open vector index. Called by Close
// while the database is still writable.
func (vs *vectorSet) close(db *DB) error { return nil }
