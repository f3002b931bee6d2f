package bench

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Stats are the median and the spread of one figure over several runs.
type Stats struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// Summarize returns the statistics of values; ok is false when there are none.
func Summarize(values []float64) (Stats, bool) {
	if len(values) == 0 {
		return Stats{}, false
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	s := Stats{Min: v[0], Max: v[len(v)-1], Values: values}
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
	return s, true
}

// Format renders the median and, when runs differ, the spread: "12.3 s (11.9-13.0)", all
// three with the median's precision.
func (s Stats) Format(unit string) string {
	d := decimals(s.Median)
	m := strconv.FormatFloat(s.Median, 'f', d, 64)
	if len(s.Values) < 2 || s.Min == s.Max {
		return m + unit
	}
	return fmt.Sprintf("%s%s (%s-%s)", m, unit, strconv.FormatFloat(s.Min, 'f', d, 64), strconv.FormatFloat(s.Max, 'f', d, 64))
}

// decimals gives a figure about three significant digits; whole numbers (counts) none.
func decimals(v float64) int {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) || a >= 100:
		return 0
	case a >= 10:
		return 1
	default:
		return 2
	}
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', decimals(v), 64) }
