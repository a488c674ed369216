package vfs

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Op names an FS or File operation for an Injector.
type Op int

// The operations an Injector is asked about. File.ReadAt counts as OpRead
// and File.Size as OpStat.
const (
	OpCreate Op = iota
	OpOpen
	OpOpenReadWrite
	OpRead
	OpWrite
	OpSync
	OpTruncate
	OpClose
	OpRemove
	OpRename
	OpMkdirAll
	OpList
	OpStat
	OpLock
	OpSyncDir
	OpLink
)

var opNames = [...]string{
	OpCreate:        "create",
	OpOpen:          "open",
	OpOpenReadWrite: "openrw",
	OpRead:          "read",
	OpWrite:         "write",
	OpSync:          "sync",
	OpTruncate:      "truncate",
	OpClose:         "close",
	OpRemove:        "remove",
	OpRename:        "rename",
	OpMkdirAll:      "mkdirall",
	OpList:          "list",
	OpStat:          "stat",
	OpLock:          "lock",
	OpSyncDir:       "syncdir",
	OpLink:          "link",
}

func (op Op) String() string {
	if op >= 0 && int(op) < len(opNames) {
		return opNames[op]
	}
	return "op(" + strconv.Itoa(int(op)) + ")"
}

// mutating reports whether op can change what is stored.
func (op Op) mutating() bool {
	switch op {
	case OpCreate, OpWrite, OpSync, OpTruncate, OpRemove, OpRename, OpMkdirAll, OpLock, OpSyncDir, OpLink:
		return true
	}
	return false
}

// Injector is asked before every operation of a WithFaults FS; a non-nil
// result fails the operation. For Rename and Link, path is the old name. It must be
// safe for concurrent use.
type Injector func(op Op, path string) error

// ErrInjected is a ready-made error for injectors.
var ErrInjected = errors.New("vfs: injected fault")

// WithFaults wraps fs so that inject is asked before every operation. A
// failed operation does nothing and returns inject's error inside an
// *os.PathError naming the op and path, so errors.Is sees both the injected
// error and, for example, syscall.ENOSPC.
func WithFaults(fs FS, inject Injector) FS { return &faultFS{fs: fs, inject: inject} }

// WithTornWrites is WithFaults, except that a failed File.Write first writes
// the first half of its buffer, as a write cut short by a crash or a full
// disk would.
func WithTornWrites(fs FS, inject Injector) FS {
	return &faultFS{fs: fs, inject: inject, torn: true}
}

type faultFS struct {
	fs     FS
	inject Injector
	torn   bool
}

func (f *faultFS) check(op Op, path string) error {
	if err := f.inject(op, path); err != nil {
		return &os.PathError{Op: op.String(), Path: path, Err: err}
	}
	return nil
}

func (f *faultFS) wrap(file File, err error, name string) (File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{f: file, fs: f, name: name}, nil
}

func (f *faultFS) Create(name string) (File, error) {
	if err := f.check(OpCreate, name); err != nil {
		return nil, err
	}
	file, err := f.fs.Create(name)
	return f.wrap(file, err, name)
}

func (f *faultFS) Open(name string) (File, error) {
	if err := f.check(OpOpen, name); err != nil {
		return nil, err
	}
	file, err := f.fs.Open(name)
	return f.wrap(file, err, name)
}

func (f *faultFS) OpenReadWrite(name string) (File, error) {
	if err := f.check(OpOpenReadWrite, name); err != nil {
		return nil, err
	}
	file, err := f.fs.OpenReadWrite(name)
	return f.wrap(file, err, name)
}

func (f *faultFS) Remove(name string) error {
	if err := f.check(OpRemove, name); err != nil {
		return err
	}
	return f.fs.Remove(name)
}

func (f *faultFS) Rename(oldname, newname string) error {
	if err := f.check(OpRename, oldname); err != nil {
		return err
	}
	return f.fs.Rename(oldname, newname)
}

// Link implements Linker when the wrapped FS does. For Link, path is the
// old name.
func (f *faultFS) Link(oldname, newname string) error {
	if err := f.check(OpLink, oldname); err != nil {
		return err
	}
	return Link(f.fs, oldname, newname)
}

func (f *faultFS) MkdirAll(dir string) error {
	if err := f.check(OpMkdirAll, dir); err != nil {
		return err
	}
	return f.fs.MkdirAll(dir)
}

func (f *faultFS) List(dir string) ([]string, error) {
	if err := f.check(OpList, dir); err != nil {
		return nil, err
	}
	return f.fs.List(dir)
}

func (f *faultFS) Stat(name string) (os.FileInfo, error) {
	if err := f.check(OpStat, name); err != nil {
		return nil, err
	}
	return f.fs.Stat(name)
}

func (f *faultFS) Lock(name string) (io.Closer, error) {
	if err := f.check(OpLock, name); err != nil {
		return nil, err
	}
	return f.fs.Lock(name)
}

func (f *faultFS) SyncDir(dir string) error {
	if err := f.check(OpSyncDir, dir); err != nil {
		return err
	}
	return f.fs.SyncDir(dir)
}

type faultFile struct {
	f    File
	fs   *faultFS
	name string
}

func (f *faultFile) Read(p []byte) (int, error) {
	if err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.name); err != nil {
		if f.fs.torn && len(p) > 1 {
			n, _ := f.f.Write(p[:len(p)/2])
			return n, err
		}
		return 0, err
	}
	return f.f.Write(p)
}

func (f *faultFile) Close() error {
	if err := f.fs.check(OpClose, f.name); err != nil {
		return err
	}
	return f.f.Close()
}

func (f *faultFile) Sync() error {
	if err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *faultFile) Size() (int64, error) {
	if err := f.fs.check(OpStat, f.name); err != nil {
		return 0, err
	}
	return f.f.Size()
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.name); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

// Countdown is an Injector (its Inject method) for a process that dies: the
// first n operations succeed, operation n (counting from 0) fails, and so
// does every later operation that could change what is stored. Reads, opens
// for reading and closes still succeed afterwards, so the caller can clean
// up. Safe for concurrent use.
type Countdown struct {
	n     int64
	err   error
	count atomic.Int64
	fired atomic.Bool
}

// FailAfter returns a Countdown that lets n operations through. Pass
// c.Inject to WithFaults. Run a workload once with n = math.MaxInt64 and
// read Count to learn how many crash points there are.
func FailAfter(n int64, err error) *Countdown { return &Countdown{n: n, err: err} }

// Inject is the Countdown's Injector.
func (c *Countdown) Inject(op Op, _ string) error {
	i := c.count.Add(1) - 1
	if i == c.n || (i > c.n && op.mutating()) {
		c.fired.Store(true)
		return c.err
	}
	return nil
}

// Fired reports whether any operation has been failed.
func (c *Countdown) Fired() bool { return c.fired.Load() }

// Count returns how many operations have been asked about.
func (c *Countdown) Count() int64 { return c.count.Load() }

// FailOn returns an Injector that fails the listed operations on paths
// containing pathContains ("" matches every path).
func FailOn(ops []Op, pathContains string, err error) Injector {
	set := make(map[Op]bool, len(ops))
	for _, op := range ops {
		set[op] = true
	}
	return func(op Op, path string) error {
		if set[op] && strings.Contains(path, pathContains) {
			return err
		}
		return nil
	}
}
