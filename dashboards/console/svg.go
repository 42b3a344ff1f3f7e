package console

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// pct formats a ratio as a percentage with three decimals.
func pct(v any) string {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case *float64:
		if x == nil {
			return "—"
		}
		f = *x
	default:
		return "—"
	}
	if math.IsNaN(f) {
		return "—"
	}
	return strconv.FormatFloat(f*100, 'f', 3, 64) + " %"
}

// sparkline draws availability points (0…1) as a small inline SVG, with
// the objective as a dashed line. The scale runs from 90 % (or lower, if
// the data does) to 100 %.
func sparkline(points []float64, objective float64) template.HTML {
	const w, h = 160.0, 32.0
	if len(points) < 2 {
		return template.HTML(`<svg class="spark" width="160" height="32" viewBox="0 0 160 32" role="img" aria-label="no data"><text x="4" y="20" font-size="11">no data</text></svg>`)
	}
	lo := 0.9
	for _, p := range points {
		if !math.IsNaN(p) {
			lo = math.Min(lo, p)
		}
	}
	y := func(v float64) float64 { return h - 2 - (v-lo)/(1-lo+1e-9)*(h-4) }
	var b strings.Builder
	for i, p := range points {
		if math.IsNaN(p) {
			continue
		}
		x := float64(i) / float64(len(points)-1) * w
		if b.Len() == 0 {
			fmt.Fprintf(&b, "M%.1f,%.1f", x, y(p))
		} else {
			fmt.Fprintf(&b, " L%.1f,%.1f", x, y(p))
		}
	}
	last := points[len(points)-1]
	obj := ""
	if objective > 0 && objective >= lo {
		obj = fmt.Sprintf(`<line x1="0" x2="%g" y1="%.1f" y2="%.1f" class="obj"/>`, w, y(objective), y(objective))
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="160" height="32" viewBox="0 0 160 32" role="img" aria-label="availability, last value %s">%s<path d="%s" class="line"/></svg>`,
		template.HTMLEscapeString(pct(last)), obj, b.String()))
}
