package task_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/gotasks/gotasks/task"
)

var metaTask = task.Define("tasktest.meta", func(ctx context.Context, n int) (int, error) { return n, nil },
	task.Meta("team", "billing"))

func TestMetaIsStoredAndReturnedAndUsingLeavesTheOriginal(t *testing.T) {
	d := useDummy(t, task.BackendOptions{})
	ctx := context.Background()
	withTenant := metaTask.Using(task.Meta("tenant", "acme"), task.Meta("team", "payments"))
	res, err := withTenant.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := task.Metadata{"team": "payments", "tenant": "acme"}
	if !maps.Equal(res.Metadata, want) {
		t.Errorf("Result.Metadata = %v, want %v", res.Metadata, want)
	}
	if stored := d.Results()[0].Metadata; !maps.Equal(stored, want) {
		t.Errorf("stored metadata %v, want %v", stored, want)
	}
	plain, err := metaTask.Enqueue(ctx, 2)
	if err != nil || !maps.Equal(plain.Metadata, task.Metadata{"team": "billing"}) {
		t.Errorf("the original task's metadata = %v, %v; want team=billing alone", plain.Metadata, err)
	}
}

func TestMetadataPastItsBoundsIsAnInvalidTask(t *testing.T) {
	useDummy(t, task.BackendOptions{})
	ctx := context.Background()
	many := metaTask
	for i := range task.MaxMetadataKeys {
		many = many.Using(task.Meta("k"+strings.Repeat("x", i), "v"))
	}
	for name, tk := range map[string]*task.Task[int, int]{
		"too many keys": many,
		"empty key":     metaTask.Using(task.Meta("", "v")),
		"long key":      metaTask.Using(task.Meta(strings.Repeat("k", task.MaxMetadataKey+1), "v")),
		"too large":     metaTask.Using(task.Meta("big", strings.Repeat("v", task.MaxMetadataSize))),
		"not UTF-8":     metaTask.Using(task.Meta("bad", "\xff")),
	} {
		if _, err := tk.Enqueue(ctx, 1); !errors.Is(err, task.ErrInvalidTask) {
			t.Errorf("%s: %v, want ErrInvalidTask", name, err)
		}
	}
}
