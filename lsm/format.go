package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// ManifestFormat returns the format version of the manifest that CURRENT
// in dir names, read before LoadVersionSet rewrites it in the current
// version. The engine tells a first-format database from a damaged one by
// it. Errors are those of LoadVersionSet for the same files.
func ManifestFormat(fs vfs.FS, dir string) (uint32, error) {
	num, err := readCurrent(fs, dir)
	if err != nil {
		return 0, err
	}
	name := layout.Path(dir, layout.TypeManifest, num)
	f, err := fs.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, errs.Corruptf(name, -1, "manifest named by CURRENT is missing: %v", err)
		}
		return 0, fmt.Errorf("lsm: open %s: %w", name, err)
	}
	defer f.Close()
	hdr := make([]byte, manifestHeaderSize)
	n, err := io.ReadFull(f, hdr)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, fmt.Errorf("lsm: read %s: %w", name, err)
	}
	if err := checkManifestHeader(hdr[:n], name); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(hdr[8:12]), nil
}
