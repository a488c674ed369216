//go:build !nopluresdb

package main

// This file holds the tscompress workload: the engine's sample encodings
// (timeseries/chunk) side by side with Prometheus's XOR chunks and
// VictoriaMetrics' lib/encoding, on monitoring-like data generated the
// same way each run from -seed. It needs no database and runs only when
// named:
//
//	go run . -workloads tscompress
//
// Every series is encoded whole by each codec, decoded, and compared bit
// for bit with what was generated; bytes per sample are printed per kind
// of series and overall, with encode and decode time per sample (the best
// of tsRounds passes).

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"text/tabwriter"
	"time"

	vmdecimal "github.com/VictoriaMetrics/VictoriaMetrics/lib/decimal"
	vmenc "github.com/VictoriaMetrics/VictoriaMetrics/lib/encoding"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
)

const (
	workloadTSCompress = "tscompress"

	tsSeries    = 400
	tsSamples   = 5760 // a day at 15 s
	tsInterval  = 15_000
	tsChunk     = 120 // Prometheus cuts a chunk at 120 samples
	tsRounds    = 3
	tsStartTime = 1_700_000_000_000
	// vmBlockHeader is charged to every VictoriaMetrics block for what its
	// block header holds beside the marshaled arrays: first value and
	// timestamp (8 bytes each), scale (2), two marshal types (2), count (4).
	vmBlockHeader = 24
)

var tsKinds = []string{"counter", "cpu-2dec", "memory", "constant", "sparse", "noisy", "nan-gaps"}

func init() {
	knownWorkloads = append(knownWorkloads, workloadTSCompress)
	tsBench.name = workloadTSCompress
	tsBench.run = runTSCompress
}

// genTSSeries returns series i of the data set: its kind is tsKinds[i %
// len(tsKinds)]; every series is a function of seed and i.
func genTSSeries(seed uint64, i, n int) []timeseries.Sample {
	r := rand.New(rand.NewPCG(seed, uint64(i)+1000))
	kind := tsKinds[i%len(tsKinds)]
	s := make([]timeseries.Sample, n)
	t := int64(tsStartTime + i*7)
	var v float64
	switch kind {
	case "cpu-2dec":
		v = float64(r.IntN(100))
	case "memory":
		v = float64(256<<20 + r.IntN(1<<30)/4096*4096)
	case "constant":
		v = []float64{1, 0, 8, 3.5, 1e9, 0.25}[r.IntN(6)]
	case "nan-gaps":
		v = float64(r.IntN(500))
	}
	nanLeft := 0
	for j := range s {
		switch kind {
		case "counter":
			if r.IntN(2000) == 0 {
				v = 0 // a restart
			}
			v += float64(r.IntN(1000))
		case "cpu-2dec":
			v = math.Round(math.Min(100, math.Max(0, v+r.NormFloat64()*3))*100) / 100
		case "memory":
			v += float64(4096 * (r.IntN(33) - 16))
			if r.IntN(8) == 0 {
				v += float64(r.IntN(4096)) // noise
			}
			v = math.Max(v, 4096)
		case "sparse":
			v = float64(r.IntN(10))
		case "noisy":
			v = r.Float64() * 1000 // 17 significant digits
		case "nan-gaps":
			if nanLeft == 0 && r.IntN(300) == 0 {
				nanLeft = 10 + r.IntN(90)
			}
			if nanLeft > 0 {
				nanLeft--
				s[j] = timeseries.Sample{T: t, V: math.NaN()}
				t += tsInterval
				continue
			}
			v = math.Round(math.Max(0, v+r.NormFloat64()*10)*10) / 10
		}
		s[j] = timeseries.Sample{T: t, V: v}
		if kind == "sparse" {
			t += 1000 + r.Int64N(600_000)
		} else {
			t += tsInterval
		}
	}
	return s
}

// tsCodec encodes a whole series and decodes it back.
type tsCodec struct {
	name string
	// encode returns the encoded series and its size in bytes.
	encode func(s []timeseries.Sample) (any, int, error)
	decode func(enc any, dst []timeseries.Sample) ([]timeseries.Sample, error)
}

var tsCodecs = []tsCodec{
	{name: "ours cold (5760)", encode: encodeCold, decode: decodeCold},
	{name: "ours hot (120)", encode: encodeHot, decode: decodeHot},
	{name: "prometheus xor (120)", encode: encodeProm, decode: decodeProm},
	{name: "vm (5760)", encode: vmEncoder(tsSamples), decode: decodeVM},
	{name: "vm (120)", encode: vmEncoder(tsChunk), decode: decodeVM},
}

func encodeCold(s []timeseries.Sample) (any, int, error) {
	b, err := chunk.EncodeCold(nil, s)
	return b, len(b), err
}

func decodeCold(enc any, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	return chunk.DecodeCold(enc.([]byte), dst)
}

func encodeHot(s []timeseries.Sample) (any, int, error) {
	var out [][]byte
	size := 0
	for i := 0; i < len(s); i += tsChunk {
		a := chunk.NewAppender()
		for _, x := range s[i:min(i+tsChunk, len(s))] {
			if err := a.Append(x.T, x.V); err != nil {
				return nil, 0, err
			}
		}
		out = append(out, a.Bytes())
		size += len(a.Bytes())
	}
	return out, size, nil
}

func decodeHot(enc any, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	var it chunk.Iterator
	for _, b := range enc.([][]byte) {
		it.Reset(b)
		for it.Next() {
			t, v := it.At()
			dst = append(dst, timeseries.Sample{T: t, V: v})
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func encodeProm(s []timeseries.Sample) (any, int, error) {
	var out [][]byte
	size := 0
	for i := 0; i < len(s); i += tsChunk {
		c := chunkenc.NewXORChunk()
		app, err := c.Appender()
		if err != nil {
			return nil, 0, err
		}
		for _, x := range s[i:min(i+tsChunk, len(s))] {
			app.Append(0, x.T, x.V)
		}
		out = append(out, c.Bytes())
		size += len(c.Bytes())
	}
	return out, size, nil
}

func decodeProm(enc any, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	var it chunkenc.Iterator
	for _, b := range enc.([][]byte) {
		c, err := chunkenc.FromData(chunkenc.EncXOR, b)
		if err != nil {
			return nil, err
		}
		it = c.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			t, v := it.At()
			dst = append(dst, timeseries.Sample{T: t, V: v})
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// vmBlock is a VictoriaMetrics block as its storage keeps one: timestamps
// and decimal mantissas marshaled losslessly (precision 64 bits), with
// what unmarshaling needs (its size charges vmBlockHeader for those).
type vmBlock struct {
	ts, vals       []byte
	tsType, vType  vmenc.MarshalType
	firstT, firstV int64
	scale          int16
	n              int
}

func vmEncoder(size int) func(s []timeseries.Sample) (any, int, error) {
	return func(s []timeseries.Sample) (any, int, error) {
		var out []vmBlock
		total := 0
		ts := make([]int64, 0, size)
		vs := make([]float64, 0, size)
		var mant []int64
		for i := 0; i < len(s); i += size {
			part := s[i:min(i+size, len(s))]
			ts, vs = ts[:0], vs[:0]
			for _, x := range part {
				ts = append(ts, x.T)
				vs = append(vs, x.V)
			}
			b := vmBlock{n: len(part)}
			mant, b.scale = vmdecimal.AppendFloatToDecimal(mant[:0], vs)
			b.ts, b.tsType, b.firstT = vmenc.MarshalTimestamps(nil, ts, 64)
			b.vals, b.vType, b.firstV = vmenc.MarshalValues(nil, mant, 64)
			out = append(out, b)
			total += len(b.ts) + len(b.vals) + vmBlockHeader
		}
		return out, total, nil
	}
}

func decodeVM(enc any, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	var ts, mant []int64
	var vs []float64
	for _, b := range enc.([]vmBlock) {
		var err error
		if ts, err = vmenc.UnmarshalTimestamps(ts[:0], b.ts, b.tsType, b.firstT, b.n); err != nil {
			return nil, err
		}
		if mant, err = vmenc.UnmarshalValues(mant[:0], b.vals, b.vType, b.firstV, b.n); err != nil {
			return nil, err
		}
		vs = vmdecimal.AppendDecimalToFloat(vs[:0], mant, b.scale)
		for i := range ts {
			dst = append(dst, timeseries.Sample{T: ts[i], V: vs[i]})
		}
	}
	return dst, nil
}

// tsResult is one codec's figures.
type tsResult struct {
	Codec string `json:"codec"`
	// Bytes and Samples per kind, in tsKinds order; Inexact counts the
	// samples that did not come back bit for bit.
	Bytes   []int64 `json:"bytes"`
	Samples []int64 `json:"samples"`
	Inexact []int64 `json:"inexact"`
	// EncodeNs and DecodeNs are nanoseconds per sample, the best of
	// tsRounds passes over every series.
	EncodeNs float64 `json:"encode_ns_per_sample"`
	DecodeNs float64 `json:"decode_ns_per_sample"`
}

type tsReport struct {
	Series  int        `json:"series"`
	Samples int        `json:"samples_per_series"`
	Seed    uint64     `json:"seed"`
	Results []tsResult `json:"results"`
}

func runTSCompress(rc runConfig) (opLogSection, error) {
	return runTSCompressSize(rc, tsSeries, tsSamples)
}

func runTSCompressSize(rc runConfig, series, samples int) (*tsReport, error) {
	rc.logf("tscompress: %d series × %d samples, seed %d", series, samples, rc.seed)
	data := make([][]timeseries.Sample, series)
	total := 0
	for i := range data {
		data[i] = genTSSeries(rc.seed, i, samples)
		total += len(data[i])
	}
	rep := &tsReport{Series: series, Samples: samples, Seed: rc.seed}
	for _, c := range tsCodecs {
		res := tsResult{
			Codec: c.name, Bytes: make([]int64, len(tsKinds)),
			Samples: make([]int64, len(tsKinds)), Inexact: make([]int64, len(tsKinds)),
			EncodeNs: math.Inf(1), DecodeNs: math.Inf(1),
		}
		encs := make([]any, series)
		sizes := make([]int, series)
		var dst []timeseries.Sample
		for round := 0; round < tsRounds; round++ {
			start := time.Now()
			for i, s := range data {
				var err error
				if encs[i], sizes[i], err = c.encode(s); err != nil {
					return rep, fmt.Errorf("%s: series %d: %w", c.name, i, err)
				}
			}
			res.EncodeNs = min(res.EncodeNs, float64(time.Since(start).Nanoseconds())/float64(total))
			start = time.Now()
			for i := range data {
				var err error
				if dst, err = c.decode(encs[i], dst[:0]); err != nil {
					return rep, fmt.Errorf("%s: decoding series %d: %w", c.name, i, err)
				}
			}
			res.DecodeNs = min(res.DecodeNs, float64(time.Since(start).Nanoseconds())/float64(total))
		}
		for i, s := range data {
			k := i % len(tsKinds)
			res.Bytes[k] += int64(sizes[i])
			res.Samples[k] += int64(len(s))
			var err error
			if dst, err = c.decode(encs[i], dst[:0]); err != nil {
				return rep, err
			}
			if len(dst) != len(s) {
				return rep, fmt.Errorf("%s: series %d: %d samples back of %d", c.name, i, len(dst), len(s))
			}
			for j := range s {
				if dst[j].T != s[j].T || math.Float64bits(dst[j].V) != math.Float64bits(s[j].V) {
					res.Inexact[k]++
				}
			}
		}
		if !strings.HasPrefix(c.name, "vm") {
			for k, n := range res.Inexact {
				if n > 0 {
					return rep, fmt.Errorf("%s: %d %s samples not bit-exact", c.name, n, tsKinds[k])
				}
			}
		}
		rc.logf("tscompress: %s done", c.name)
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func (r *tsResult) perSample(k int) float64 {
	if k < 0 {
		var b, n int64
		for i := range r.Bytes {
			b, n = b+r.Bytes[i], n+r.Samples[i]
		}
		return float64(b) / float64(n)
	}
	return float64(r.Bytes[k]) / float64(r.Samples[k])
}

func (rep *tsReport) find(prefix string) *tsResult {
	for i := range rep.Results {
		if strings.HasPrefix(rep.Results[i].Codec, prefix) {
			return &rep.Results[i]
		}
	}
	return nil
}

func (rep *tsReport) print(w io.Writer, markdown bool) {
	head := append([]string{"kind"}, func() (h []string) {
		for _, r := range rep.Results {
			h = append(h, r.Codec)
		}
		return h
	}()...)
	head = append(head, "cold / prom", "cold / vm5760", "vm5760 inexact", "vm120 inexact")
	cold, prom, vm, vm120 := rep.find("ours cold"), rep.find("prometheus"), rep.find("vm (5760)"), rep.find("vm (120)")
	var rows [][]string
	for k := -1; k < len(tsKinds); k++ {
		name := "overall"
		if k >= 0 {
			name = tsKinds[k]
		}
		row := []string{name}
		for i := range rep.Results {
			row = append(row, fmt.Sprintf("%.3f", rep.Results[i].perSample(k)))
		}
		ratio := func(a, b *tsResult) string {
			if a == nil || b == nil {
				return ""
			}
			return fmt.Sprintf("%.2f", a.perSample(k)/b.perSample(k))
		}
		inexact := func(r *tsResult) string {
			if r == nil {
				return ""
			}
			var n, of int64
			for i := range r.Inexact {
				if k < 0 || i == k {
					n, of = n+r.Inexact[i], of+r.Samples[i]
				}
			}
			return fmt.Sprintf("%d / %d", n, of)
		}
		row = append(row, ratio(cold, prom), ratio(cold, vm), inexact(vm), inexact(vm120))
		rows = append(rows, row)
	}
	speedHead := []string{"codec", "encode ns/sample", "decode ns/sample"}
	var speed [][]string
	for _, r := range rep.Results {
		speed = append(speed, []string{r.Codec, fmt.Sprintf("%.1f", r.EncodeNs), fmt.Sprintf("%.1f", r.DecodeNs)})
	}
	title := fmt.Sprintf("tscompress: bytes per sample, %d series × %d samples (15 s interval; kinds in turn), seed %d", rep.Series, rep.Samples, rep.Seed)
	notes := []string{
		"ours cold: one EncodeCold block per series; ours hot and prometheus xor: chunks of 120 samples; vm: decimal.AppendFloatToDecimal then MarshalTimestamps/MarshalValues at precision 64, plus 24 bytes of block header per block.",
		"inexact: samples VictoriaMetrics did not give back bit for bit (its decimal conversion is lossy); ours and prometheus are checked exact (a mismatch fails the run).",
		"speed: the best of 3 passes over every series; decode materialises every sample.",
	}
	if markdown {
		fmt.Fprintf(w, "\n%s.\n\n", title)
		mdTable(w, head, rows)
		fmt.Fprintln(w)
		mdTable(w, speedHead, speed)
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "-", n)
		}
		return
	}
	fmt.Fprintf(w, "\n%s\n\n", title)
	textTable(w, head, rows)
	fmt.Fprintln(w)
	textTable(w, speedHead, speed)
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range notes {
		fmt.Fprintln(w, "  -", n)
	}
}

func mdTable(w io.Writer, head []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n|:--%s|\n", strings.Join(head, " | "), strings.Repeat("|--:", len(head)-1))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func textTable(w io.Writer, head []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\t\n", strings.Join(head, "\t"))
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t\n", strings.Join(r, "\t"))
	}
	tw.Flush()
}
