package vfs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemFS is an in-memory FS with a strict durability model, for tests.
//
// Each file (an inode-like memNode, shared by every name and handle that
// refers to it) holds its current bytes and the bytes as of its last
// File.Sync, plus the list of writes and truncations made since then. Each
// directory holds its current entries and the entries as of its last
// SyncDir. CrashClone keeps only the durable half of both; CrashCloneWith
// also keeps part of the unsynced changes, as a real disk may.
// Directories themselves are durable as soon as MkdirAll returns: the engine
// creates its directory once, before anything that matters.
//
// Concurrency: all methods are safe for concurrent use. mu guards the
// directory tree and the lock set; each memNode has its own RWMutex guarding
// its bytes, so ReadAt never waits for directory operations. Lock order:
// MemFS.mu, then memNode.mu.
type MemFS struct {
	mu    sync.Mutex
	dirs  map[string]*memDir // cleaned path -> directory
	locks map[string]bool    // cleaned paths held by Lock
}

type memDir struct {
	files   map[string]*memNode // current entries, by base name
	durable map[string]*memNode // entries as of the last SyncDir
}

type memNode struct {
	mu     sync.RWMutex
	data   []byte // current contents
	synced []byte // contents as of the last Sync
	// pending are the writes and truncations since the last Sync, in
	// order: what a crash may keep in part (see CrashCloneWith).
	pending []memOp
}

// memOp is one change to a file's bytes not yet made durable: a write of
// data at off, or (data nil, trunc set) a truncation to off.
type memOp struct {
	off   int64
	data  []byte
	trunc bool
}

func newMemDir() *memDir {
	return &memDir{files: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// NewMem returns an empty in-memory filesystem. The roots "/" and "." exist.
func NewMem() *MemFS {
	fs := &MemFS{dirs: map[string]*memDir{}, locks: map[string]bool{}}
	fs.dirs["/"] = newMemDir()
	fs.dirs["."] = newMemDir()
	return fs
}

func notExist(op, path string) error {
	return &os.PathError{Op: op, Path: path, Err: os.ErrNotExist}
}

// split cleans name and returns its directory and base name.
func split(name string) (p, dir, base string) {
	p = filepath.Clean(name)
	return p, filepath.Dir(p), filepath.Base(p)
}

// lookup returns the directory holding name and the node, if any. fs.mu
// must be held.
func (fs *MemFS) lookup(op, name string) (*memDir, string, *memNode, error) {
	p, dir, base := split(name)
	if _, isDir := fs.dirs[p]; isDir {
		return nil, "", nil, &os.PathError{Op: op, Path: name, Err: syscall.EISDIR}
	}
	d := fs.dirs[dir]
	if d == nil {
		return nil, "", nil, notExist(op, name)
	}
	return d, base, d.files[base], nil
}

// Create implements FS.
func (fs *MemFS) Create(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, base, n, err := fs.lookup("create", name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		n = &memNode{}
		d.files[base] = n
	} else {
		n.mu.Lock()
		n.data = n.data[:0]
		n.pending = append(n.pending, memOp{off: 0, trunc: true})
		n.mu.Unlock()
	}
	return &memFile{n: n, name: name, writable: true}, nil
}

func (fs *MemFS) open(op, name string, writable bool) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, _, n, err := fs.lookup(op, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, notExist(op, name)
	}
	return &memFile{n: n, name: name, writable: writable}, nil
}

// Open implements FS.
func (fs *MemFS) Open(name string) (File, error) { return fs.open("open", name, false) }

// OpenReadWrite implements FS.
func (fs *MemFS) OpenReadWrite(name string) (File, error) { return fs.open("open", name, true) }

// Remove implements FS.
func (fs *MemFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, dir, base := split(name)
	if _, isDir := fs.dirs[p]; isDir {
		if p == "/" || p == "." {
			return &os.PathError{Op: "remove", Path: name, Err: syscall.EBUSY}
		}
		if len(fs.dirs[p].files) > 0 || fs.hasSubdir(p) {
			return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
		}
		delete(fs.dirs, p)
		return nil
	}
	d := fs.dirs[dir]
	if d == nil || d.files[base] == nil {
		return notExist("remove", name)
	}
	delete(d.files, base)
	return nil
}

func (fs *MemFS) hasSubdir(p string) bool {
	for q := range fs.dirs {
		if q != p && filepath.Dir(q) == p {
			return true
		}
	}
	return false
}

// Rename implements FS. A directory can be renamed to a name that does
// not exist or is an empty directory; like every directory change of
// MemFS, that is durable at once.
func (fs *MemFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if op := filepath.Clean(oldname); fs.dirs[op] != nil {
		return fs.renameDir(op, filepath.Clean(newname))
	}
	od, obase, n, err := fs.lookup("rename", oldname)
	if err != nil {
		return err
	}
	if n == nil {
		return notExist("rename", oldname)
	}
	nd, nbase, _, err := fs.lookup("rename", newname)
	if err != nil {
		return err
	}
	delete(od.files, obase)
	nd.files[nbase] = n
	return nil
}

// renameDir moves directory op and everything under it to np. fs.mu
// must be held.
func (fs *MemFS) renameDir(op, np string) error {
	if op == "/" || op == "." || np == op || strings.HasPrefix(np, op+string(filepath.Separator)) {
		return &os.PathError{Op: "rename", Path: op, Err: syscall.EINVAL}
	}
	parent := fs.dirs[filepath.Dir(np)]
	if parent == nil {
		return notExist("rename", np)
	}
	if parent.files[filepath.Base(np)] != nil {
		return &os.PathError{Op: "rename", Path: np, Err: syscall.ENOTDIR}
	}
	if d := fs.dirs[np]; d != nil {
		if len(d.files) > 0 || fs.hasSubdir(np) {
			return &os.PathError{Op: "rename", Path: np, Err: syscall.ENOTEMPTY}
		}
		delete(fs.dirs, np)
	}
	moved := map[string]*memDir{}
	for q, d := range fs.dirs {
		if q == op {
			moved[np] = d
		} else if rest, ok := strings.CutPrefix(q, op+string(filepath.Separator)); ok {
			moved[filepath.Join(np, rest)] = d
		} else {
			continue
		}
		delete(fs.dirs, q)
	}
	for q, d := range moved {
		fs.dirs[q] = d
	}
	return nil
}

// Link implements Linker: newname becomes another name of oldname's
// bytes. Its entry is durable after SyncDir, like a created file's.
func (fs *MemFS) Link(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, _, n, err := fs.lookup("link", oldname)
	if err != nil {
		return err
	}
	if n == nil {
		return notExist("link", oldname)
	}
	nd, nbase, existing, err := fs.lookup("link", newname)
	if err != nil {
		return err
	}
	if existing != nil {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: os.ErrExist}
	}
	nd.files[nbase] = n
	return nil
}

// MkdirAll implements FS.
func (fs *MemFS) MkdirAll(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var missing []string
	for q := filepath.Clean(dir); ; q = filepath.Dir(q) {
		if fs.dirs[q] != nil {
			break
		}
		if parent := fs.dirs[filepath.Dir(q)]; parent != nil && parent.files[filepath.Base(q)] != nil {
			return &os.PathError{Op: "mkdir", Path: q, Err: syscall.ENOTDIR}
		}
		missing = append(missing, q)
		if filepath.Dir(q) == q {
			break
		}
	}
	for _, q := range missing {
		fs.dirs[q] = newMemDir()
	}
	return nil
}

// List implements FS: files and subdirectories, sorted.
func (fs *MemFS) List(dir string) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := filepath.Clean(dir)
	d := fs.dirs[p]
	if d == nil {
		return nil, notExist("open", dir)
	}
	names := make([]string, 0, len(d.files))
	for name := range d.files {
		names = append(names, name)
	}
	for q := range fs.dirs {
		if q != p && filepath.Dir(q) == p {
			names = append(names, filepath.Base(q))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Stat implements FS.
func (fs *MemFS) Stat(name string) (os.FileInfo, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p, dir, base := split(name)
	if fs.dirs[p] != nil {
		return memInfo{name: base, dir: true}, nil
	}
	d := fs.dirs[dir]
	if d == nil || d.files[base] == nil {
		return nil, notExist("stat", name)
	}
	n := d.files[base]
	n.mu.RLock()
	size := int64(len(n.data))
	n.mu.RUnlock()
	return memInfo{name: base, size: size}, nil
}

// Lock implements FS. Locks live in this MemFS only.
func (fs *MemFS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := filepath.Clean(name)
	if fs.locks[p] {
		return nil, fmt.Errorf("vfs: lock %s: %w", name, ErrLocked)
	}
	d, base, n, err := fs.lookup("lock", name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		d.files[base] = &memNode{}
	}
	fs.locks[p] = true
	return &memLock{fs: fs, path: p}, nil
}

type memLock struct {
	once sync.Once
	fs   *MemFS
	path string
}

func (l *memLock) Close() error {
	l.once.Do(func() {
		l.fs.mu.Lock()
		delete(l.fs.locks, l.path)
		l.fs.mu.Unlock()
	})
	return nil
}

// SyncDir implements FS: the directory's current entries become durable.
func (fs *MemFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := fs.dirs[filepath.Clean(dir)]
	if d == nil {
		return notExist("open", dir)
	}
	d.durable = make(map[string]*memNode, len(d.files))
	for name, n := range d.files {
		d.durable[name] = n
	}
	return nil
}

// CrashMode says which of a file's unsynced changes a crash keeps.
type CrashMode int

const (
	// DropUnsynced keeps only what was synced: every write and truncation
	// since a file's last Sync is lost.
	DropUnsynced CrashMode = iota
	// PersistPrefix keeps, for each file, the first k of its unsynced
	// changes (k random, from none to all), in order; the change after them,
	// if a write, may be kept in part (a torn write: a prefix of its bytes
	// ending at a sector boundary).
	PersistPrefix
	// PersistSubset keeps a random subset of each file's unsynced changes,
	// each possibly torn: a later write may survive an earlier one that is
	// lost. A lost range reads as zeroes (or as the synced bytes it
	// overwrote), and the file is as long as the changes kept make it.
	PersistSubset
)

func (m CrashMode) String() string {
	switch m {
	case DropUnsynced:
		return "drop-unsynced"
	case PersistPrefix:
		return "persist-prefix"
	case PersistSubset:
		return "persist-subset"
	}
	return fmt.Sprintf("CrashMode(%d)", int(m))
}

// SectorSize is the unit a disk writes whole: a torn write keeps a prefix
// that ends at a multiple of it (a file offset).
const SectorSize = 512

// CrashModes lists every CrashMode, for tests that try them all.
var CrashModes = []CrashMode{DropUnsynced, PersistPrefix, PersistSubset}

// CrashClone returns what a power cut would leave: every directory, each
// holding its durable entries, each file holding its synced bytes. A file
// reachable by two durable names stays one file. Nothing is shared with fs:
// handles open on fs never touch the clone. Locks are not carried over.
// It is CrashCloneWith(nil, DropUnsynced).
func (fs *MemFS) CrashClone() *MemFS { return fs.CrashCloneWith(nil, DropUnsynced) }

// CrashCloneWith is CrashClone, except that each file keeps the part of its
// unsynced changes that mode and rng choose. Directory entries are as in
// CrashClone. The choice is a function of rng's state and fs's contents
// only, so a seeded rng reproduces a crash. rng may be nil only with
// DropUnsynced.
func (fs *MemFS) CrashCloneWith(rng *rand.Rand, mode CrashMode) *MemFS {
	if mode != DropUnsynced && rng == nil {
		panic("vfs: CrashCloneWith needs a rand.Rand for " + mode.String())
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	c := &MemFS{dirs: make(map[string]*memDir, len(fs.dirs)), locks: map[string]bool{}}
	nodes := map[*memNode]*memNode{}
	// Visit files in a fixed order so that rng decides the same way for
	// the same filesystem.
	paths := make([]string, 0, len(fs.dirs))
	for p := range fs.dirs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		d := fs.dirs[p]
		cd := newMemDir()
		names := make([]string, 0, len(d.durable))
		for name := range d.durable {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			n := d.durable[name]
			cn := nodes[n]
			if cn == nil {
				n.mu.RLock()
				data := crashData(n.synced, n.pending, rng, mode)
				n.mu.RUnlock()
				cn = &memNode{data: data, synced: append([]byte(nil), data...)}
				nodes[n] = cn
			}
			cd.files[name] = cn
			cd.durable[name] = cn
		}
		c.dirs[p] = cd
	}
	return c
}

// KillClone returns what a killed process leaves (SIGKILL, not a power
// cut): every file and directory entry as it is, written bytes included,
// but what was not synced is still not durable: a CrashClone of the
// clone loses it as a CrashClone of fs would. Nothing is shared with fs;
// locks are not carried over.
func (fs *MemFS) KillClone() *MemFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	c := &MemFS{dirs: make(map[string]*memDir, len(fs.dirs)), locks: map[string]bool{}}
	nodes := map[*memNode]*memNode{}
	clone := func(n *memNode) *memNode {
		if cn := nodes[n]; cn != nil {
			return cn
		}
		n.mu.RLock()
		cn := &memNode{data: bytes.Clone(n.data), synced: bytes.Clone(n.synced)}
		for _, op := range n.pending {
			cn.pending = append(cn.pending, memOp{off: op.off, data: bytes.Clone(op.data), trunc: op.trunc})
		}
		n.mu.RUnlock()
		nodes[n] = cn
		return cn
	}
	for p, d := range fs.dirs {
		cd := newMemDir()
		for name, n := range d.files {
			cd.files[name] = clone(n)
		}
		for name, n := range d.durable {
			cd.durable[name] = clone(n)
		}
		c.dirs[p] = cd
	}
	return c
}

// crashData returns the bytes a file holds after a crash: synced, with the
// unsynced changes in pending that mode keeps applied in order.
func crashData(synced []byte, pending []memOp, rng *rand.Rand, mode CrashMode) []byte {
	data := append([]byte(nil), synced...)
	if len(pending) == 0 || mode == DropUnsynced {
		return data
	}
	// torn applies a random prefix of a write (maybe all of it).
	// torn keeps a prefix of a write ending at a sector boundary inside
	// it (maybe all of it): disks write sectors whole.
	torn := func(op memOp) memOp {
		first := (op.off/SectorSize + 1) * SectorSize // first boundary after off
		end := op.off + int64(len(op.data))
		if first < end && rng.IntN(3) == 0 {
			cut := first + rng.Int64N((end-first+SectorSize-1)/SectorSize)*SectorSize
			op.data = op.data[:cut-op.off]
		}
		return op
	}
	switch mode {
	case PersistPrefix:
		k := rng.IntN(len(pending) + 1)
		for _, op := range pending[:k] {
			data = applyOp(data, op)
		}
		if k < len(pending) && !pending[k].trunc && rng.IntN(2) == 0 {
			data = applyOp(data, torn(pending[k]))
		}
	case PersistSubset:
		for _, op := range pending {
			if rng.IntN(2) == 0 {
				continue
			}
			if !op.trunc {
				op = torn(op)
			}
			data = applyOp(data, op)
		}
	}
	return data
}

func applyOp(data []byte, op memOp) []byte {
	if op.trunc {
		return resize(data, op.off)
	}
	if len(op.data) == 0 {
		return data // a write torn before its first byte left nothing
	}
	if end := op.off + int64(len(op.data)); end > int64(len(data)) {
		data = resize(data, end)
	}
	copy(data[op.off:], op.data)
	return data
}

// resize returns b cut or zero-extended to size bytes.
func resize(b []byte, size int64) []byte {
	if size <= int64(len(b)) {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// memFile is a handle on a memNode with its own position. Like every File
// it is not safe for concurrent use, except ReadAt.
type memFile struct {
	n        *memNode
	name     string
	pos      int64
	writable bool
	closed   bool
}

func (f *memFile) check(op string, write bool) error {
	if f.closed {
		return &os.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	if write && !f.writable {
		return &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	}
	f.n.mu.RLock()
	defer f.n.mu.RUnlock()
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	n := f.n
	n.mu.Lock()
	if gap := f.pos - int64(len(n.data)); gap > 0 {
		n.data = append(n.data, make([]byte, gap)...)
	}
	k := copy(n.data[f.pos:], p)
	n.data = append(n.data, p[k:]...)
	if len(p) > 0 {
		n.pending = append(n.pending, memOp{off: f.pos, data: append([]byte(nil), p...)})
	}
	n.mu.Unlock()
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) Close() error {
	if err := f.check("close", false); err != nil {
		return err
	}
	f.closed = true
	return nil
}

func (f *memFile) Sync() error {
	if err := f.check("sync", false); err != nil {
		return err
	}
	f.n.mu.Lock()
	f.n.synced = append(f.n.synced[:0], f.n.data...)
	f.n.pending = nil
	f.n.mu.Unlock()
	return nil
}

func (f *memFile) Size() (int64, error) {
	if err := f.check("stat", false); err != nil {
		return 0, err
	}
	f.n.mu.RLock()
	defer f.n.mu.RUnlock()
	return int64(len(f.n.data)), nil
}

func (f *memFile) Truncate(size int64) error {
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.n.data = resize(f.n.data, size)
	f.n.pending = append(f.n.pending, memOp{off: size, trunc: true})
	return nil
}
