package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// The example runs (the ImmediateBackend runs the task at Enqueue), and
// exports the request's span, the enqueue's as its child and the
// attempt's, linked to the enqueue's.
func Example() {
	f, err := os.CreateTemp("", "spans")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	stderr := os.Stderr
	os.Stderr = f // the exporter's output, read below
	main()
	os.Stderr = stderr

	type context struct{ SpanID string }
	type span struct {
		Name        string
		SpanContext context
		Parent      context
		Links       []struct{ SpanContext context }
	}
	var spans []span
	_, _ = f.Seek(0, io.SeekStart)
	for dec := json.NewDecoder(f); ; {
		var s span
		if err := dec.Decode(&s); err != nil {
			break
		}
		spans = append(spans, s)
	}
	name := map[string]string{}
	for _, s := range spans {
		name[s.SpanContext.SpanID] = s.Name
	}
	for _, s := range spans {
		fmt.Printf("%s: parent %q", s.Name, name[s.Parent.SpanID])
		for _, l := range s.Links {
			fmt.Printf(", linked to %q", name[l.SpanContext.SpanID])
		}
		fmt.Println()
	}
	// Output:
	// COMPLETE true
	// process emails: parent "", linked to "publish emails"
	// publish emails: parent "signup"
	// signup: parent ""
}
