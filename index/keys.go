package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/plures/pluresdb/internal/errs"
)

// Key prefixes within the index namespace. Part of the format.
const (
	pCatalog = 'i' // 'i' name -> catalog value
	pNextID  = 'I' // 'I' -> next index id, uint32 BE
	pEntry   = 'e' // 'e' id(4) value docnum(4) -> empty
	pForward = 'f' // 'f' docKey -> docnum(4), then per index: id(4) len(2) value
	pDocNum  = 'n' // 'n' docnum(4) -> docKey
	pNextNum = 'N' // 'N' -> next doc number, uint64 BE
)

func catalogKey(name string) []byte {
	return append([]byte{pCatalog}, name...)
}

func entryPrefix(dst []byte, id uint32) []byte {
	dst = append(dst, pEntry)
	return binary.BigEndian.AppendUint32(dst, id)
}

func entryKey(dst []byte, id uint32, enc []byte, num uint32) []byte {
	dst = entryPrefix(dst, id)
	dst = append(dst, enc...)
	return binary.BigEndian.AppendUint32(dst, num)
}

func forwardKey(dst, docKey []byte) []byte {
	dst = append(dst, pForward)
	return append(dst, docKey...)
}

func docNumKey(dst []byte, num uint32) []byte {
	dst = append(dst, pDocNum)
	return binary.BigEndian.AppendUint32(dst, num)
}

// Forward is a forward key's value taken apart (DecodeForward): the
// document's number and, per index it has a value in (ascending ids), the
// encoded value it is indexed under.
type Forward struct {
	Doc    uint32
	Values []IndexValue
}

// IndexValue is the value a document is indexed under in one index.
type IndexValue struct {
	ID    uint32
	Value []byte
}

const whatForward = "index forward value"

// AppendForward appends the forward value of f: the document number (4
// BE), then per index, in ascending id order, id (4 BE), the value's
// length (2 BE) and the encoded value.
func AppendForward(dst []byte, f Forward) []byte {
	dst = binary.BigEndian.AppendUint32(dst, f.Doc)
	for _, v := range f.Values {
		dst = binary.BigEndian.AppendUint32(dst, v.ID)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v.Value)))
		dst = append(dst, v.Value...)
	}
	return dst
}

// DecodeForward decodes a forward value (Values alias v), refusing what
// AppendForward never writes: ids out of order, empty values or values
// longer than MaxValueLen, a truncated or overlong value. It never
// panics; errors wrap errs.ErrCorruption. A value's encoding is checked
// by whoever knows its index's kind.
func DecodeForward(v []byte) (Forward, error) {
	num, vals, err := decodeForward(nil, v)
	return Forward{Doc: num, Values: vals}, err
}

// decodeForward is DecodeForward appending the values to dst.
func decodeForward(dst []IndexValue, v []byte) (uint32, []IndexValue, error) {
	if len(v) < 4 {
		return 0, dst, errs.Corruptf(whatForward, 0, "%d bytes", len(v))
	}
	num := binary.BigEndian.Uint32(v)
	off := 4
	for off < len(v) {
		if len(v)-off < 6 {
			return 0, dst, errs.Corruptf(whatForward, int64(off), "truncated index value header")
		}
		id := binary.BigEndian.Uint32(v[off:])
		n := int(binary.BigEndian.Uint16(v[off+4:]))
		off += 6
		switch {
		case n == 0 || n > MaxValueLen:
			return 0, dst, errs.Corruptf(whatForward, int64(off-2), "value of %d bytes", n)
		case n > len(v)-off:
			return 0, dst, errs.Corruptf(whatForward, int64(off), "value of %d bytes overruns the %d left", n, len(v)-off)
		case len(dst) > 0 && dst[len(dst)-1].ID >= id:
			return 0, dst, errs.Corruptf(whatForward, int64(off-6), "index id %d after %d", id, dst[len(dst)-1].ID)
		}
		dst = append(dst, IndexValue{ID: id, Value: v[off : off+n : off+n]})
		off += n
	}
	return num, dst, nil
}

// prefixEnd returns the least key above every key with prefix p (nil when
// there is none: p is all 0xFF).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Key is a key of the index namespace taken apart (ParseKey).
type Key struct {
	Type   byte   // one of 'i', 'I', 'e', 'f', 'n', 'N'
	Name   string // 'i': the index name
	ID     uint32 // 'e': the index id
	Value  []byte // 'e': the encoded value (check it with DecodeValue and the index's kind)
	Doc    uint32 // 'e', 'n': the document number
	DocKey []byte // 'f': the document key
}

const whatKey = "index key"

// ParseKey takes apart a key of the index namespace (without the engine's
// namespace byte), checking its shape: an 'e' key's value is not checked
// here, as that needs the index's kind. It never panics; errors wrap
// errs.ErrCorruption.
func ParseKey(key []byte) (Key, error) {
	if len(key) == 0 {
		return Key{}, errs.Corruptf(whatKey, 0, "empty key")
	}
	k := Key{Type: key[0]}
	rest := key[1:]
	switch key[0] {
	case pCatalog:
		if len(rest) == 0 {
			return Key{}, errs.Corruptf(whatKey, 1, "catalog key without a name")
		}
		k.Name = string(rest)
	case pNextID, pNextNum:
		if len(rest) != 0 {
			return Key{}, errs.Corruptf(whatKey, 1, "%d bytes after %q", len(rest), key[0])
		}
	case pEntry:
		if len(rest) < 4+1+4 {
			return Key{}, errs.Corruptf(whatKey, int64(len(key)), "entry key of %d bytes", len(key))
		}
		k.ID = binary.BigEndian.Uint32(rest)
		k.Value = rest[4 : len(rest)-4]
		k.Doc = binary.BigEndian.Uint32(rest[len(rest)-4:])
	case pForward:
		if len(rest) == 0 {
			return Key{}, errs.Corruptf(whatKey, 1, "forward key without a document key")
		}
		k.DocKey = rest
	case pDocNum:
		if len(rest) != 4 {
			return Key{}, errs.Corruptf(whatKey, int64(len(key)), "document key of %d bytes", len(key))
		}
		k.Doc = binary.BigEndian.Uint32(rest)
	default:
		return Key{}, errs.Corruptf(whatKey, 0, "unknown key type %#x", key[0])
	}
	return k, nil
}

// Info describes an index: its definition and build state as the catalog
// holds them, and counters kept in memory since the Set was loaded.
type Info struct {
	Name    string
	ID      uint32 // local to the replica; never reused
	Kind    Kind
	Field   string // the document field; empty when Extract
	Unique  bool
	Extract bool // values come from the Spec's extractor over the whole value

	Ready    bool   // built: queries may use it
	Cursor   []byte // building: the last document key the build indexed (nil: none yet)
	Done     uint64 // building: documents the build has visited
	Estimate uint64 // building: the documents the engine expected at creation

	Unparsed   uint64 // values that did not parse (documents left out), since load
	Duplicates uint64 // imported values breaking Unique, indexed anyway, since load
}

// Catalog value format. Part of the format.
const (
	catalogVersion = 2 // 1: per-index forward keys and 'k' number keys, refused
	flagUnique     = 0x01
	flagExtract    = 0x02
	flagReady      = 0x04
	flagReserved   = 0xf8
)

const whatCatalog = "index catalog"

// appendCatalog appends the catalog value of in:
//
//	version(1) id(4 BE) kind(1) flags(1) uvarint len, field
//	uvarint len, cursor  uvarint done  uvarint estimate
//	xxhash64 of all before (8, LE)
func appendCatalog(dst []byte, in Info) []byte {
	start := len(dst)
	dst = append(dst, catalogVersion)
	dst = binary.BigEndian.AppendUint32(dst, in.ID)
	var flags byte
	if in.Unique {
		flags |= flagUnique
	}
	if in.Extract {
		flags |= flagExtract
	}
	if in.Ready {
		flags |= flagReady
	}
	dst = append(dst, byte(in.Kind), flags)
	dst = binary.AppendUvarint(dst, uint64(len(in.Field)))
	dst = append(dst, in.Field...)
	dst = binary.AppendUvarint(dst, uint64(len(in.Cursor)))
	dst = append(dst, in.Cursor...)
	dst = binary.AppendUvarint(dst, in.Done)
	dst = binary.AppendUvarint(dst, in.Estimate)
	return binary.LittleEndian.AppendUint64(dst, xxhash.Sum64(dst[start:]))
}

// DecodeCatalog decodes a catalog value (Name is left empty: it is the
// key's). It never panics; errors wrap errs.ErrCorruption
// (errs.ErrNewerFormat for a newer version).
func DecodeCatalog(v []byte) (Info, error) {
	if len(v) == 0 {
		return Info{}, errs.Corruptf(whatCatalog, 0, "empty")
	}
	switch {
	case v[0] == 0:
		return Info{}, errs.Corruptf(whatCatalog, 0, "format version 0")
	case v[0] > catalogVersion:
		return Info{}, errs.NewerFormatf(whatCatalog, uint32(v[0]), catalogVersion)
	case v[0] < catalogVersion:
		return Info{}, errs.Corruptf(whatCatalog, 0, "format version %d: index keys of an earlier layout, which this build does not read", v[0])
	}
	if len(v) < 1+4+2+8 {
		return Info{}, errs.Corruptf(whatCatalog, int64(len(v)), "truncated: %d bytes", len(v))
	}
	body := v[:len(v)-8]
	if got, want := binary.LittleEndian.Uint64(v[len(body):]), xxhash.Sum64(body); got != want {
		return Info{}, errs.Corruptf(whatCatalog, int64(len(body)), "checksum %#x, computed %#x", got, want)
	}
	in := Info{ID: binary.BigEndian.Uint32(body[1:]), Kind: Kind(body[5])}
	flags := body[6]
	if !in.Kind.valid() {
		return Info{}, errs.Corruptf(whatCatalog, 5, "unknown kind %d", body[5])
	}
	if flags&flagReserved != 0 {
		return Info{}, errs.Corruptf(whatCatalog, 6, "reserved flag bits in %#x", flags)
	}
	in.Unique, in.Extract, in.Ready = flags&flagUnique != 0, flags&flagExtract != 0, flags&flagReady != 0
	off := 7
	bytesField := func(what string) ([]byte, error) {
		n, w := binary.Uvarint(body[off:])
		if w <= 0 || n > uint64(len(body)-off-w) {
			return nil, errs.Corruptf(whatCatalog, int64(off), "bad %s length", what)
		}
		off += w
		b := body[off : off+int(n)]
		off += int(n)
		return b, nil
	}
	field, err := bytesField("field")
	if err != nil {
		return Info{}, err
	}
	in.Field = string(field)
	cursor, err := bytesField("cursor")
	if err != nil {
		return Info{}, err
	}
	if len(cursor) > 0 {
		in.Cursor = append([]byte(nil), cursor...)
	}
	for _, p := range []*uint64{&in.Done, &in.Estimate} {
		n, w := binary.Uvarint(body[off:])
		if w <= 0 {
			return Info{}, errs.Corruptf(whatCatalog, int64(off), "bad counter")
		}
		*p = n
		off += w
	}
	switch {
	case off != len(body):
		return Info{}, errs.Corruptf(whatCatalog, int64(off), "%d bytes after the counters", len(body)-off)
	case in.Extract == (in.Field != ""):
		return Info{}, errs.Corruptf(whatCatalog, 7, "an index has a field or an extractor, not both or neither")
	case in.Ready && in.Cursor != nil:
		return Info{}, errs.Corruptf(whatCatalog, 6, "a ready index with a build cursor")
	}
	return in, nil
}

// readCatalog reads the catalog entry of name; ok false when absent.
func readCatalog(st Store, name string) (Info, bool, error) {
	v, ok, err := st.Get(catalogKey(name))
	if err != nil || !ok {
		return Info{}, false, err
	}
	in, err := DecodeCatalog(v)
	if err != nil {
		return Info{}, false, fmt.Errorf("index %q: %w", name, err)
	}
	in.Name = name
	return in, true, nil
}
