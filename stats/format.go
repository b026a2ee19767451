package stats

import (
	"fmt"
	"strings"
	"time"
)

// The page's formats; its script has the same, for its refreshes.

// formatMs formats milliseconds, "–" for none.
func formatMs(v *float64) string {
	if v == nil {
		return "–"
	}
	if *v >= 100 {
		return fmt.Sprintf("%.0f ms", *v)
	}
	return fmt.Sprintf("%.1f ms", *v)
}

// formatAgo formats a time since, to the second.
func formatAgo(seconds float64) string {
	return (time.Duration(seconds) * time.Second).String()
}

// formatShare formats spent of allowed, "–" without a budget.
func formatShare(spent, allowed *float64) string {
	if spent == nil || allowed == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f", *spent, *allowed)
}

// Sparkline size, in the SVG's units.
const (
	sparkWidth  = 120
	sparkHeight = 24
)

// sparkPoints returns the points of the polyline of latencies (nil ones
// left out), scaled to the sparkline's box with the highest at the top.
func sparkPoints(latencies []*float64) string {
	highest := 0.0
	for _, v := range latencies {
		if v != nil {
			highest = max(highest, *v)
		}
	}
	if highest == 0 {
		highest = 1
	}
	step := float64(sparkWidth) / float64(max(len(latencies)-1, 1))
	var points []string
	for i, v := range latencies {
		if v != nil {
			points = append(points, fmt.Sprintf("%.1f,%.1f", float64(i)*step, sparkHeight-1-(*v/highest)*(sparkHeight-2)))
		}
	}
	return strings.Join(points, " ")
}
