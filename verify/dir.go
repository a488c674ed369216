package verify

import (
	"fmt"
	"path/filepath"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/wal"
)

// checkVector reads and decodes a vector checkpoint.
func (c *checker) checkVector(path string) []Finding {
	data, fs := c.readFile(path, "vector")
	if fs != nil {
		return fs
	}
	if _, err := hnsw.Unmarshal(data); err != nil {
		f := findingOf(err, path)
		f.File = path // the decoder names the encoding, not the file
		return []Finding{f}
	}
	return nil
}

// checkDirectory compares the files on disk with the MANIFEST: tables
// it does not list, older and newer MANIFESTs, temporary and unknown
// files, and lists quarantine/.
func (c *checker) checkDirectory(levels [lsm.NumLevels][]*lsm.FileMeta) {
	if c.ms != nil {
		live := map[string]bool{}
		for _, files := range levels {
			for _, m := range files {
				live[layout.Path(lsm.TableDir(c.dir, c.coldDir, m.Cold), layout.TypeTable, m.Num)] = true
			}
		}
		onDisk := func(dir string, nums []layout.FileNum) {
			for _, n := range nums {
				path := layout.Path(dir, layout.TypeTable, n)
				switch _, deleted := c.ms.Deleted[n]; {
				case live[path]:
				case deleted:
					c.rep.add(Finding{Kind: Obsolete, File: path, Offset: -1,
						Message: "a table the MANIFEST deleted (compacted away); the next open removes it"})
				default:
					c.rep.add(Finding{Kind: Extra, File: path, Offset: -1,
						Message: "a table the MANIFEST does not list; the next open moves it to quarantine/"})
				}
			}
		}
		onDisk(c.dir, c.tables)
		if c.coldDir != "" && c.coldDir != c.dir {
			onDisk(c.coldDir, c.coldTables)
		}
		for _, n := range c.manifests {
			path := layout.Path(c.dir, layout.TypeManifest, n)
			switch {
			case n < c.ms.ManifestNum:
				c.rep.add(Finding{Kind: Obsolete, File: path, Offset: -1, Message: "an older MANIFEST; the next open removes it"})
			case n > c.ms.ManifestNum:
				c.rep.add(Finding{Kind: Extra, File: path, Offset: -1,
					Message: fmt.Sprintf("a MANIFEST newer than the one CURRENT names (%s); the next open moves it to quarantine/", layout.Name(layout.TypeManifest, c.ms.ManifestNum))})
			}
		}
	}
	for _, name := range c.temps {
		c.rep.add(Finding{Kind: Warning, File: filepath.Join(c.dir, name), Offset: -1,
			Message: "a temporary file left by an interrupted write; the next open moves it to quarantine/"})
	}
	for _, name := range c.unknown {
		c.rep.add(Finding{Kind: Extra, File: filepath.Join(c.dir, name), Offset: -1, Message: "a file the database did not write"})
	}
	for _, name := range c.subdirs {
		path := filepath.Join(c.dir, name)
		if name != wal.QuarantineDir {
			c.rep.add(Finding{Kind: Extra, File: path, Offset: -1, Message: "a directory the database did not make"})
			continue
		}
		names, err := c.fs.List(path)
		if err != nil {
			c.rep.add(Finding{Kind: Unreadable, File: path, Offset: -1, Message: err.Error()})
			continue
		}
		for _, q := range names {
			c.rep.add(Finding{Kind: Quarantined, File: filepath.Join(path, q), Offset: -1,
				Message: "moved aside by the engine as damaged or unproven; not checked"})
		}
	}
}
