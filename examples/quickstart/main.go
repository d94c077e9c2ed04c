// Command quickstart is the README's quick start, kept here so that it is
// compiled and run (main_test.go); examples/readme_test.go checks that the
// README shows it verbatim.
package main

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/task"
)

type Email struct{ To, Subject string }

var sendEmail = task.Define("emails.send", func(ctx context.Context, e Email) (string, error) {
	return "sent to " + e.To, nil // the real work goes here
}, task.Queue("emails"))

func main() {
	ctx := context.Background()
	// With nothing configured, "default" is the ImmediateBackend: the task runs now.
	res, err := sendEmail.Using(task.Priority(10)).Enqueue(ctx, Email{To: "ann@example.com"})
	if err != nil {
		panic(err) // errors.Is(err, task.ErrInvalidTask) for bad priority, queue, run_after, args
	}
	v, err := res.Value() // task.ErrNotFinished until COMPLETE; the task's *task.Error when FAILED
	fmt.Println(res.Status, v, err)
}
