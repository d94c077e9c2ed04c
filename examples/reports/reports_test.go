package reports

import (
	"testing"
	"time"

	"github.com/gotasks/gotasks/scheduler"
)

// TestSchedules: both entries are registered, the report at 9:00 Berlin
// time on weekdays, the cleanup every 10 minutes.
func TestSchedules(t *testing.T) {
	next := map[string]func(time.Time) time.Time{}
	for _, e := range scheduler.Entries() {
		next[e.TaskName()] = e.Next
	}
	if len(next) != 2 || next["reports.daily"] == nil || next["reports.cleanup"] == nil {
		t.Fatalf("entries: %v", scheduler.Entries())
	}
	friday := time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC) // summer: Berlin is UTC+2
	if got, want := next["reports.daily"](friday), time.Date(2026, 7, 6, 7, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("the report after Friday noon: %v, want Monday %v", got, want)
	}
	if got, want := next["reports.cleanup"](friday.Add(3*time.Minute)), friday.Add(10*time.Minute); !got.Equal(want) {
		t.Errorf("cleanup: %v, want %v", got, want)
	}
}
