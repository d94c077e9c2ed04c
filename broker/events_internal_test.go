package broker

import (
	"testing"
	"time"

	"github.com/gotasks/gotasks/task"
)

func TestParseEventsReadsNamesByLength(t *testing.T) {
	msg := "1700000000123456\nc A1 2 9 x y\nz end\ne B2 0 0 "
	evs, err := parseEvents("q", msg)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Kind: EventCompleted, ID: "A1", Task: "x y\nz end", Queue: "q", Status: task.StatusComplete, Attempt: 2, At: time.UnixMicro(1700000000123456)},
		{Kind: EventEnqueued, ID: "B2", Task: "", Queue: "q", Status: task.StatusNew, At: time.UnixMicro(1700000000123456)},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events %+v, want %d", len(evs), evs, len(want))
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want[i])
		}
	}
}

func TestParseEventsStopsAtWhatItCannotRead(t *testing.T) {
	for _, msg := range []string{
		"", "x", "1\n", "1\n c A 1 1 n", "1\nq A 1 1 n", "1\ncc A 1 1 n", "1\nc A x 1 n", "1\nc A 1 -1 n",
		"1\nc A 1 99 n", "1\nc A 1 1 nn", "1\nc A 1", "1\nc A 1 1 n\n\n",
	} {
		evs, err := parseEvents("q", msg)
		if err == nil && msg != "1\n" {
			t.Errorf("%q: no error (%+v)", msg, evs)
		}
	}
}

func FuzzParseEvents(f *testing.F) {
	f.Add("1700000000123456\nc A1 2 9 x y\nz end\ne B2 0 0 ")
	f.Add("1\n c A 1 1 n")
	f.Fuzz(func(t *testing.T, msg string) {
		evs, _ := parseEvents("q", msg) // must not panic
		for _, ev := range evs {
			if ev.Kind == "" || ev.Queue != "q" {
				t.Errorf("%q: %+v", msg, ev)
			}
		}
	})
}
