// Package emails defines the tasks: the programs that enqueue them and the
// workers that run them both import it.
package emails

import (
	"context"

	"github.com/gotasks/gotasks/task"
)

type Email struct{ To, Subject string }

var Send = task.Define("emails.send", func(ctx context.Context, e Email) (string, error) {
	return "sent to " + e.To, nil // the real work goes here
}, task.Queue("emails"))
