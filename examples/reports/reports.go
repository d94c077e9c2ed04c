package reports

import (
	"github.com/gotasks/gotasks/scheduler"
	"github.com/gotasks/gotasks/task"
)

var report = task.Define("reports.daily", sendReport)
var _ = scheduler.Periodic(report, "0 9 * * 1-5", ReportArgs{Team: "ops"},
	scheduler.In(berlin)) // or "CRON_TZ=Europe/Berlin 0 9 * * 1-5"; default UTC
var _ = scheduler.Periodic(cleanup, "@every 10m", CleanupArgs{})
