package scheduler_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

type ReportArgs struct{ Team string }

var dailyReport = task.Define("example.reports.daily", func(ctx context.Context, a ReportArgs) (string, error) {
	return "report for " + a.Team, nil
})

// Periodic registers a schedule next to its task, at package level like
// task.Define; every worker process's scheduler runs it, and each tick is
// enqueued once however many run.
func ExamplePeriodic() {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	e, err := scheduler.NewEntry(dailyReport, "0 9 * * 1-5", ReportArgs{Team: "ops"}, scheduler.In(berlin))
	if err != nil {
		panic(err)
	}
	// (scheduler.Periodic is NewEntry plus registration, panicking on a bad spec.)
	next := e.Next(time.Date(2030, 3, 29, 12, 0, 0, 0, time.UTC)) // a Friday
	fmt.Println(e.TaskName(), next.In(berlin).Format("Mon 15:04 MST"))
	// Output: example.reports.daily Mon 09:00 CEST
}
