package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Config configures a run of the three parts. A part with no iterations
// is skipped.
type Config struct {
	Seed         uint64
	Kills        KillConfig // its Seed is set from Seed
	Faults       int
	FaultFrom    int
	DiskFull     int
	DiskFullFrom int
}

// Figures are the results of a run.
type Figures struct {
	Seed     uint64             `json:"seed"`
	Kill     *KillFigures       `json:"kill,omitempty"`
	Damage   *DamageFigures     `json:"damage,omitempty"`
	DiskFull *DiskFullFigures   `json:"diskfull,omitempty"`
	Seconds  map[string]float64 `json:"seconds"`
}

// Run runs the parts cfg asks for.
func Run(cfg Config) Figures {
	fig := Figures{Seed: cfg.Seed, Seconds: map[string]float64{}}
	timed := func(part string, f func()) {
		start := time.Now()
		f()
		fig.Seconds[part] = time.Since(start).Round(10 * time.Millisecond).Seconds()
	}
	if cfg.Kills.Kills > 0 {
		kc := cfg.Kills
		kc.Seed = cfg.Seed
		timed("kill", func() { k := RunKill(kc); fig.Kill = &k })
	}
	if cfg.Faults > 0 {
		timed("damage", func() { d := RunDamage(cfg.Seed, cfg.FaultFrom, cfg.Faults); fig.Damage = &d })
	}
	if cfg.DiskFull > 0 {
		timed("diskfull", func() { d := RunDiskFull(cfg.Seed, cfg.DiskFullFrom, cfg.DiskFull); fig.DiskFull = &d })
	}
	return fig
}

// Failures returns every failure of every part.
func (f Figures) Failures() []string {
	var out []string
	if f.Kill != nil {
		out = append(out, f.Kill.Failures...)
	}
	if f.Damage != nil {
		out = append(out, f.Damage.Failures...)
	}
	if f.DiskFull != nil {
		out = append(out, f.DiskFull.Failures...)
	}
	return out
}

// Print writes the figures for a reader.
func (f Figures) Print(w io.Writer) {
	if k := f.Kill; k != nil {
		fmt.Fprintf(w, "kill: %d SIGKILLs (%d before Open returned), %d acknowledged batches (%d writes), %d batches in flight found applied; lost %d, half-applied batches %d, reopen failures %d (%.1fs)\n",
			k.Kills, k.KilledInOpen, k.AckedBatches, k.AckedWrites, k.InFlightSeen, k.Lost, k.HalfApplied, k.ReopenFailures, f.Seconds["kill"])
	}
	if d := f.Damage; d != nil {
		fmt.Fprintf(w, "damage: database of %d files (%s), %d keys\n", d.Files, fmtCounts(d.FilesByType), d.Keys)
		fmt.Fprintf(w, "damage: %d faults injected (%s); detected by fsck %d, undetectable by design %d (%s), undetected %d; wrong reads %d; history exports short without an error %d, refused %d\n",
			d.Injected, fmtCounts(d.ByFault), d.Detected, d.Harmless, fmtCounts(d.HarmlessWhy), d.Undetected, d.WrongReads, d.ExportsShort, d.ExportsRefused)
		fmt.Fprintf(w, "damage: opens refused %d (%s), then read-only opens refused %d (%s); reads refused with ErrCorruption %d, right reads %d (%.1fs)\n",
			d.OpensRefused, fmtCounts(d.OpenRefusedBy), d.ReadOnlyRefused, fmtCounts(d.ReadOnlyRefusedBy), d.ReadsRefused, d.RightReads, f.Seconds["damage"])
		r := d.Repair
		fmt.Fprintf(w, "repair: %d repairs of detected faults, refused in part %d; repaired databases opened %d (%d with Salvage), nothing lost %d, clean after repair %d; key reads right %d, in reported losses %d, refused in files repair left damaged %d, wrong outside them %d\n",
			r.Runs, r.Refused, r.Opened, r.WithSalvage, r.Whole, r.Clean, r.KeysRight, r.KeysLost, r.KeysRefused, r.Wrong)
		fmt.Fprintf(w, "refill from a peer: %d repairs refilled, every key right %d, not run (log damage left for Salvage) %d; key reads right %d, lost with the database's own dropped operations or in files left damaged %d, wrong %d\n",
			r.Refills, r.RefillWhole, r.RefillNotRun, r.RefillKeysRight, r.RefillKeysLost, r.RefillWrong)
	}
	if d := f.DiskFull; d != nil {
		fmt.Fprintf(w, "diskfull: %d injections, %d acknowledged batches (%d writes), failed commits %d (%s), other errors %d (%s); acknowledged writes lost %d, reopen failures %d, writes refused after reopen %d (%.1fs)\n",
			d.Injections, d.AckedBatches, d.AckedWrites, d.FailedCommits, fmtCounts(d.CommitErrors), d.OtherErrors, fmtCounts(d.OtherErrorKinds), d.Lost, d.ReopenFailures, d.ResumeFailures, f.Seconds["diskfull"])
	}
	fails := f.Failures()
	for _, s := range fails {
		fmt.Fprintln(w, "FAIL:", s)
	}
	if len(fails) == 0 {
		fmt.Fprintln(w, "ok")
	}
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	s := ""
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, m[k])
	}
	return s
}
