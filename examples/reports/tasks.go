// Package reports is the README's example of periodic tasks.
package reports

import (
	"context"
	"time"
	_ "time/tzdata" // Europe/Berlin on machines without a zoneinfo database

	"github.com/gotasks/gotasks/task"
)

type ReportArgs struct{ Team string }

type CleanupArgs struct{}

var berlin = mustLoadLocation("Europe/Berlin")

func mustLoadLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

func sendReport(ctx context.Context, a ReportArgs) (string, error) {
	return "report sent to " + a.Team, nil
}

var cleanup = task.Define("reports.cleanup", func(ctx context.Context, _ CleanupArgs) (int, error) {
	return 0, nil // removed nothing
})
