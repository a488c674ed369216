package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/refill"
	"github.com/plures/pluresdb/repair"
	"github.com/plures/pluresdb/verify"
)

// Part 2, continued: repair. Every fault the checker found is repaired
// on a fresh damaged copy (package repair, as plures-fsck --repair runs
// it); the repaired database must open (with Options.Salvage when the
// repair left damaged log records, as its report says to), and every key
// must read right or lie in a range the repair reported lost. A key read
// wrong outside every reported loss is a failure: repair never hides
// what it could not bring back.

// RepairFigures are the results of repairing the damaged copies.
type RepairFigures struct {
	Runs int `json:"repairs"`
	// Refused: repair would not do all of it and said why (a missing
	// REPLICA with no archive to restore it from, say).
	Refused int `json:"refused"`
	// Opened: the repaired database opened; WithSalvage: only with
	// Options.Salvage, dropping the damaged log records repair reported.
	Opened      int `json:"opened"`
	WithSalvage int `json:"opened_with_salvage"`
	// Whole: every key read right after the repair (the log held what
	// the damaged files did, or nothing was lost).
	Whole int `json:"nothing_lost"`
	// KeysRight and KeysLost count the key reads after repairs: right,
	// or wrong inside a range the repair reported lost.
	KeysRight int `json:"keys_right"`
	KeysLost  int `json:"keys_in_reported_losses"`
	// KeysRefused: reads that fail with ErrCorruption in a file the
	// repair reported it left damaged (Refused, Unrepaired).
	KeysRefused int `json:"keys_refused"`
	// Wrong: key reads wrong outside every reported loss (failures).
	Wrong int `json:"keys_wrong"`
	// Clean: the checker finds no damage in the repaired directory
	// (repair leaves damaged log records for Options.Salvage).
	Clean int `json:"clean_after_repair"`

	// Then each fault again, repaired and refilled from a peer that holds
	// every operation (package refill, plures-fsck --repair --from-peer).
	Refills int `json:"refills"`
	// RefillWhole: every key read right after the refill.
	RefillWhole int `json:"refills_whole"`
	// RefillNotRun: the repaired database did not open for the refill
	// (damaged log records the repair leaves for Options.Salvage).
	RefillNotRun int `json:"refills_not_run"`
	// RefillKeysRight counts key reads right after refills; RefillKeysLost
	// those wrong where the database lost its own operations (dropped
	// log records: a peer's copy of them is refused as ErrRewound) or a
	// file repair left damaged.
	RefillKeysRight int `json:"refill_keys_right"`
	RefillKeysLost  int `json:"refill_keys_lost_own_operations"`
	// RefillWrong: key reads wrong otherwise (failures).
	RefillWrong int `json:"refill_keys_wrong"`
}

// lossCovers says whether a reported loss may hold key: its key range
// holds the key in the documents' or counters' namespace, or it names
// lost operations without keys (damaged log records).
func lossCovers(losses []repair.Loss, salvaged []pluresdb.LostRange, key string) bool {
	if len(salvaged) > 0 {
		return true // dropped log records: any key's later writes
	}
	for _, l := range losses {
		if l.Keys == nil {
			if len(l.Seqs) > 0 {
				return true
			}
			continue
		}
		for _, ns := range []byte{nsDocuments, nsCounters} {
			sk := append([]byte{ns}, key...)
			if bytes.Compare(l.Keys.Smallest, sk) <= 0 && bytes.Compare(sk, l.Keys.Largest) <= 0 {
				return true
			}
		}
	}
	return false
}

// The namespaces of the engine's stored keys (ARCHITECTURE.md, "Keys").
const (
	nsDocuments = 0x01
	nsCounters  = 0x05
)

// repairCheck repairs a fresh copy damaged by f and reads it back.
func (b *damageBase) repairCheck(f fault, fig *RepairFigures, failf func(string, ...any)) {
	mem, err := b.copyTo()
	if err != nil {
		failf("repair: copy: %v", err)
		return
	}
	if err := b.inject(mem, f); err != nil {
		failf("repair: inject: %v", err)
		return
	}
	fig.Runs++
	res, err := repair.Dir(context.Background(), mem, damageDir, repair.Options{})
	if err != nil {
		failf("repair could not run: %v", err)
		return
	}
	if len(res.Refused) > 0 {
		fig.Refused++
	}
	if rep, err := verify.Dir(context.Background(), mem, damageDir, verify.Options{Parallelism: 1}); err == nil &&
		!slices.ContainsFunc(rep.Findings, func(f verify.Finding) bool { return f.Kind.Damage() }) {
		fig.Clean++
	}
	db, err := pluresdb.Open(damageDir, &pluresdb.Options{FS: mem})
	if err != nil && errors.Is(err, pluresdb.ErrCorruption) {
		db, err = pluresdb.Open(damageDir, &pluresdb.Options{FS: mem, Salvage: true})
		if err == nil {
			fig.WithSalvage++
		}
	}
	if err != nil {
		if len(res.Refused) == 0 {
			failf("the repaired database does not open: %v (repair: %s)", err, summary(res))
		}
		return
	}
	defer db.Close()
	fig.Opened++
	salvaged := db.LostRanges()
	var wrong []string
	lost := 0
	for k := range damageKeys {
		key := keyName(k)
		got, err := readDoc(db, key)
		switch {
		case err == nil && got.String() == b.model[key].String():
			fig.KeysRight++
		case lossCovers(res.Lost, salvaged, key):
			fig.KeysLost++
			lost++
		case errors.Is(err, pluresdb.ErrCorruption) && (len(res.Refused) > 0 || len(res.Unrepaired) > 0):
			// A damaged file repair said it left as it was.
			fig.KeysRefused++
			lost++
		default:
			fig.Wrong++
			wrong = append(wrong, wrongRead(key, got, b.model[key], err))
		}
	}
	if len(wrong) > 0 {
		failf("after repair (%s), wrong reads outside every reported loss: %s", summary(res), firstFew(wrong))
		return
	}
	if lost == 0 {
		fig.Whole++
	}
}

// refillCheck repairs a fresh copy damaged by f, refills it from the
// peer, and reads it back: every key must read right, but where the
// database lost its own operations (log records Salvage dropped, which a
// peer cannot hand back to the same replica) or a file repair left
// damaged.
func (b *damageBase) refillCheck(f fault, fig *RepairFigures, failf func(string, ...any)) {
	mem, err := b.copyTo(true)
	if err != nil {
		failf("refill: copy: %v", err)
		return
	}
	if err := b.inject(mem, f); err != nil {
		failf("refill: inject: %v", err)
		return
	}
	res, err := repair.Dir(context.Background(), mem, damageDir, repair.Options{})
	if err != nil {
		return // reported by repairCheck
	}
	fig.Refills++
	rr, err := refill.Dir(context.Background(), damageDir, res.Lost,
		refill.Options{FS: mem, Sources: []refill.SourceSpec{{Kind: refill.Peer, Path: peerDir}}})
	if err != nil {
		failf("refill from the peer: %v", err)
		return
	}
	if rr.NotRun != "" {
		fig.RefillNotRun++
	}
	db, err := pluresdb.Open(damageDir, &pluresdb.Options{FS: mem})
	if err != nil && errors.Is(err, pluresdb.ErrCorruption) {
		db, err = pluresdb.Open(damageDir, &pluresdb.Options{FS: mem, Salvage: true})
	}
	if err != nil {
		return // reported by repairCheck
	}
	defer db.Close()
	salvaged := len(db.LostRanges()) > 0
	leftDamaged := len(res.Refused) > 0 || len(res.Unrepaired) > 0
	var wrong []string
	lost := 0
	for k := range damageKeys {
		key := keyName(k)
		got, err := readDoc(db, key)
		switch {
		case err == nil && got.String() == b.model[key].String():
			fig.RefillKeysRight++
		case salvaged || (leftDamaged && err != nil && errors.Is(err, pluresdb.ErrCorruption)):
			fig.RefillKeysLost++
			lost++
		default:
			fig.RefillWrong++
			wrong = append(wrong, wrongRead(key, got, b.model[key], err))
		}
	}
	if len(wrong) > 0 {
		failf("after repair (%s) and a refill from a peer holding everything (complete %v, not run %q), wrong reads: %s",
			summary(res), rr.Complete, rr.NotRun, firstFew(wrong))
		return
	}
	if lost == 0 {
		fig.RefillWhole++
	}
}

// summary is a repair result in one line.
func summary(res *repair.Result) string {
	var parts []string
	for _, a := range res.Actions {
		parts = append(parts, fmt.Sprintf("%s %s", a.Kind, a.File))
	}
	for _, l := range res.Lost {
		parts = append(parts, "lost in "+l.File)
	}
	for _, r := range res.Refused {
		parts = append(parts, "refused: "+r)
	}
	if len(parts) == 0 {
		return "no action"
	}
	return strings.Join(parts, "; ")
}

// wrongRead describes a key read wrong.
func wrongRead(key string, got, want doc, err error) string {
	if err != nil {
		return fmt.Sprintf("%s: %v", key, err)
	}
	return fmt.Sprintf("%s = %s, want %s", key, got, want)
}

// firstFew joins the first three of list and says how many more there are.
func firstFew(list []string) string {
	if len(list) <= 3 {
		return strings.Join(list, "; ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:3], "; "), len(list)-3)
}
