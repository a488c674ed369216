package verify

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
)

// maxCurrentSize bounds what is read of CURRENT: one short file name.
const maxCurrentSize = 256

// checkManifest checks CURRENT and the MANIFEST it names, every edit of
// it, and keeps what it says for the other checks. With a fixed file set
// the running database may start a new MANIFEST meanwhile: then it tries
// again.
func (c *checker) checkManifest() {
	cur := layout.Path(c.dir, layout.TypeCurrent, 0)
	if !c.hasCurrent {
		msg := "CURRENT is missing: the database does not open"
		if n := len(c.manifests); n > 0 {
			msg += fmt.Sprintf(" (the newest MANIFEST is %s)", layout.Name(layout.TypeManifest, c.manifests[n-1]))
		}
		c.rep.add(Finding{Kind: Missing, File: cur, Offset: -1, Message: msg})
		return
	}
	for attempt := 0; ; attempt++ {
		again := c.opts.Files != nil && attempt < 3
		name, f := c.readCurrent(cur)
		if f != nil {
			c.rep.add(*f)
			return
		}
		_, num, ok := layout.Parse(name)
		path := layout.Path(c.dir, layout.TypeManifest, num)
		if !ok || !strings.HasPrefix(name, "MANIFEST-") {
			c.rep.add(Finding{Kind: Corrupt, File: cur, Offset: 0, Message: fmt.Sprintf("CURRENT names %q, not a MANIFEST", name)})
			return
		}
		fi, err := c.fs.Stat(path)
		if err != nil {
			if again && c.currentChanged(cur, name) {
				continue
			}
			f := c.openFailed(path, err)
			f.Message = "the MANIFEST that CURRENT names: " + f.Message
			c.rep.add(f)
			return
		}
		ms, err := lsm.ReadManifestState(c.fs, c.dir)
		if err != nil || ms.ManifestNum != num {
			if again && c.currentChanged(cur, name) {
				continue
			}
			if err == nil {
				err = fmt.Errorf("CURRENT changed while the MANIFEST was read")
			}
			c.rep.add(findingOf(err, path))
			return
		}
		c.count("manifest", fi.Size())
		c.count("current", int64(len(name)+1))
		c.ms = ms
		c.rep.Manifest = path
		if ms.Torn && c.opts.Files == nil {
			c.rep.add(Finding{Kind: Warning, File: path, Offset: -1,
				Message: "the last edit is torn (a crash during an edit); the next open ignores it"})
		}
		return
	}
}

// readCurrent returns the name CURRENT holds, or a finding.
func (c *checker) readCurrent(path string) (string, *Finding) {
	f, err := c.fs.Open(path)
	if err != nil {
		fd := c.openFailed(path, err)
		return "", &fd
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCurrentSize+1))
	if err != nil {
		return "", &Finding{Kind: Unreadable, File: path, Offset: -1, Message: err.Error()}
	}
	name, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok || len(b) > maxCurrentSize || bytes.ContainsAny(name, "\n/\\") {
		return "", &Finding{Kind: Corrupt, File: path, Offset: 0, Message: fmt.Sprintf("CURRENT holds %q, not a file name and a newline", b[:min(len(b), 64)])}
	}
	return string(name), nil
}

// currentChanged reports whether CURRENT now names another file than name.
func (c *checker) currentChanged(path, name string) bool {
	now, f := c.readCurrent(path)
	return f == nil && now != name
}
