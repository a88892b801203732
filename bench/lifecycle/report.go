package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// rewriteBundleConfig makes the bundle's config (from `runc spec`) run
// `true` without a terminal, keeping every other field as written.
func rewriteBundleConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read bundle config: %w", err)
	}
	out, err := setProcessTrue(data)
	if err != nil {
		return fmt.Errorf("bundle config %s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("write bundle config: %w", err)
	}
	return nil
}

// setProcessTrue sets process.args to ["true"] and process.terminal to false
// in an OCI config document.
func setProcessTrue(config []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, fmt.Errorf("parse OCI config: %w", err)
	}
	process, ok := doc["process"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("OCI config has no process object")
	}
	process["args"] = []string{"true"}
	process["terminal"] = false
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("encode OCI config: %w", err)
	}
	return append(out, '\n'), nil
}

// median of ds; zero for none. ds is not modified.
func median(ds []time.Duration) time.Duration {
	return quantile(ds, 0.5)
}

// quantile returns the q-quantile of ds by linear interpolation between
// closest ranks (q=0.5 is the usual median).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	return s[lo] + time.Duration(frac*float64(s[lo+1]-s[lo]))
}

// opDurations returns the samples' durations of one op (or their totals
// for op == opCount).
func opDurations(samples []cycle, o op) []time.Duration {
	ds := make([]time.Duration, len(samples))
	for i, c := range samples {
		if o == opCount {
			ds[i] = c.total()
		} else {
			ds[i] = c.d[o]
		}
	}
	return ds
}

func peakRSS(samples []cycle, o op) int64 {
	var peak int64
	for _, c := range samples {
		peak = max(peak, c.maxRSS[o])
	}
	return peak
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

func mib(kib int64) string { return strconv.FormatFloat(float64(kib)/1024, 'f', 1, 64) }

// report prints medians per op, the total's p90, peak RSS per runtime
// command, and each runtime's median ratios to the reference.
func report(w io.Writer, rts []*runtimeUnderTest, reference string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "median ms\tcreate\tstart\twait\tdelete\ttotal\ttotal p90\tcycles\tpeak RSS MiB create/start/delete\t")
	var ref *runtimeUnderTest
	for _, rt := range rts {
		if rt.label == reference && len(rt.samples) > 0 {
			ref = rt
		}
		if len(rt.samples) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t0\tfailed: %v\t\n", rt.label, rt.err)
			continue
		}
		row := []string{rt.label}
		for o := opCreate; o <= opCount; o++ {
			row = append(row, ms(median(opDurations(rt.samples, o))))
		}
		row = append(row, ms(quantile(opDurations(rt.samples, opCount), 0.9)), strconv.Itoa(len(rt.samples)),
			mib(peakRSS(rt.samples, opCreate))+" / "+mib(peakRSS(rt.samples, opStart))+" / "+mib(peakRSS(rt.samples, opDelete)))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	for _, rt := range rts {
		if rt.err != nil && len(rt.samples) > 0 {
			fmt.Fprintf(w, "note: %s failed after %d cycles: %v\n", rt.label, len(rt.samples), rt.err)
		}
		if rt.pidfdWaits > 0 {
			fmt.Fprintf(w, "note: %s: in %d cycles the init was not reparented to the benchmark; wait used a pidfd and could not check its exit status\n",
				rt.label, rt.pidfdWaits)
		}
	}
	if ref == nil {
		fmt.Fprintf(w, "no ratios: reference runtime %q has no samples\n", reference)
		return
	}
	if len(rts) == 1 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ratio to %s\tcreate\tstart\twait\tdelete\ttotal\tpeak RSS create\t\n", ref.label)
	for _, rt := range rts {
		if rt == ref || len(rt.samples) == 0 {
			continue
		}
		row := []string{rt.label + "/" + ref.label}
		for o := opCreate; o <= opCount; o++ {
			row = append(row, ratio(float64(median(opDurations(rt.samples, o))), float64(median(opDurations(ref.samples, o)))))
		}
		row = append(row, ratio(float64(peakRSS(rt.samples, opCreate)), float64(peakRSS(ref.samples, opCreate))))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

// writeSamples writes one CSV row per measured cycle, in milliseconds and KiB.
func writeSamples(path string, rts []*runtimeUnderTest) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create samples file: %w", err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"runtime", "cycle", "create_ms", "start_ms", "wait_ms", "delete_ms", "total_ms",
		"create_maxrss_kib", "start_maxrss_kib", "delete_maxrss_kib"})
	for _, rt := range rts {
		for i, c := range rt.samples {
			_ = w.Write([]string{rt.label, strconv.Itoa(i), ms(c.d[opCreate]), ms(c.d[opStart]), ms(c.d[opWait]),
				ms(c.d[opDelete]), ms(c.total()), strconv.FormatInt(c.maxRSS[opCreate], 10),
				strconv.FormatInt(c.maxRSS[opStart], 10), strconv.FormatInt(c.maxRSS[opDelete], 10)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("write samples: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close samples file: %w", err)
	}
	return nil
}
