package pluresdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
)

// quarantineDir is the folder, inside the database directory (and inside
// the cold directory, for its files), that holds the files open could not
// prove obsolete. The engine never reads or deletes what is there.
const quarantineDir = "quarantine"

// removeFile deletes a file open proved obsolete.
func (db *DB) removeFile(path string) {
	if err := db.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.log.Error().Err(err).Str("file", path).Msg("removing obsolete file")
		return
	}
	db.log.Info().Str("file", path).Msg("removed obsolete file")
}

// quarantine moves dir/name to dir/quarantine/, never over a file already
// there (a suffix .1, .2, ... keeps both), and makes the move durable. A
// failure leaves the file where it was.
func (db *DB) quarantine(dir, name, why string) {
	qdir := filepath.Join(dir, quarantineDir)
	src := filepath.Join(dir, name)
	dst, err := vfs.MoveAside(db.fs, src, qdir)
	if dst != "" {
		db.quarantined = append(db.quarantined, dst)
	}
	if err != nil && dst == "" {
		db.log.Error().Err(err).Str("file", src).Str("why", why).Msg("could not quarantine file; left in place")
		return
	}
	if err != nil {
		db.log.Error().Err(err).Str("file", src).Str("to", dst).Msg("quarantined file: the move may not be durable")
	}
	db.log.Warn().Str("file", src).Str("to", dst).Str("why", why).
		Msg("file not provably obsolete: moved to quarantine")
}

// opLogUsable returns nil when the op log's metadata was read at open,
// else an error wrapping ErrCorruption that names the damaged file: the
// sync functions refuse with it rather than work from stale metadata.
func (db *DB) opLogUsable() error {
	if db.ol.damage != nil {
		return fmt.Errorf("%w: op log unavailable until the database is repaired: %w", errs.ErrCorruption, db.ol.damage)
	}
	return nil
}
