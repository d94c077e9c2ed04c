package task_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gotasks/gotasks/task"
)

// Email is the argument of the example task sendEmail.
type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Tasks are defined once, at package level, so that every process that
// imports the package (the one that enqueues and the workers) knows them.
var sendEmail = task.Define("example.send_email",
	func(ctx context.Context, e Email) (string, error) {
		return "sent " + e.Subject + " to " + e.To, nil
	},
	task.Queue("emails"),
)

var halve = task.Define("example.halve", func(ctx context.Context, n int) (int, error) {
	if n%2 != 0 {
		return 0, fmt.Errorf("%d is odd", n)
	}
	return n / 2, nil
})

func ExampleDefine() {
	// sendEmail is defined above:
	//
	//	var sendEmail = task.Define("example.send_email",
	//		func(ctx context.Context, e Email) (string, error) { ... },
	//		task.Queue("emails"),
	//	)
	fmt.Println(sendEmail.Name(), sendEmail.QueueName(), sendEmail.PriorityValue(), sendEmail.BackendName())

	// Workers find the code by name.
	def, ok := task.Lookup("example.send_email")
	fmt.Println(ok, def.Name())
	// Output:
	// example.send_email emails 0 default
	// true example.send_email
}

// With nothing configured, the "default" backend is an ImmediateBackend:
// Enqueue runs the task at once and returns a finished result.
func ExampleTask_Enqueue() {
	ctx := context.Background()
	res, err := sendEmail.Enqueue(ctx, Email{To: "ada@example.com", Subject: "welcome"})
	if err != nil {
		panic(err)
	}
	v, err := res.Value()
	fmt.Println(res.Status, v, err)
	// Output: COMPLETE sent welcome to ada@example.com <nil>
}

// Enqueue refuses an invalid task before it reaches the backend.
func ExampleTask_Enqueue_invalid() {
	ctx := context.Background()
	_, err := sendEmail.Using(task.Priority(500)).Enqueue(ctx, Email{})
	fmt.Println(errors.Is(err, task.ErrInvalidTask))
	fmt.Println(err)
	// Output:
	// true
	// enqueue example.send_email: gotasks: invalid task: priority 500 is out of range [-100, 100]
}

func ExampleTask_Using() {
	urgent := sendEmail.Using(task.Priority(50), task.Queue("urgent"))
	fmt.Println(urgent.Name(), urgent.QueueName(), urgent.PriorityValue())
	fmt.Println(sendEmail.Name(), sendEmail.QueueName(), sendEmail.PriorityValue())
	// Output:
	// example.send_email urgent 50
	// example.send_email emails 0
}

func ExampleTask_EnqueueMany() {
	ctx := context.Background()
	results, err := halve.EnqueueMany(ctx, []int{10, 4, 7})
	if err != nil {
		panic(err)
	}
	for _, r := range results {
		v, err := r.Value()
		fmt.Println(r.Status, v, err)
	}
	// Output:
	// COMPLETE 5 <nil>
	// COMPLETE 2 <nil>
	// FAILED 0 7 is odd
}

// The DummyBackend stores tasks without running them, for testing code that
// enqueues.
func ExampleNewDummyBackend() {
	dummy := task.NewDummyBackend("default", task.BackendOptions{})
	task.Configure(map[string]task.Backend{"default": dummy})
	defer task.Configure(nil) // back to the ImmediateBackend

	ctx := context.Background()
	if _, err := sendEmail.Enqueue(ctx, Email{To: "a@example.com"}); err != nil {
		panic(err)
	}
	if _, err := halve.Enqueue(ctx, 8); err != nil {
		panic(err)
	}
	for _, r := range dummy.Results() {
		fmt.Println(r.TaskName, r.Queue, r.Status)
	}
	var e Email
	_ = dummy.Results()[0].DecodeArgs(&e)
	fmt.Println(e.To)

	dummy.Clear()
	fmt.Println(len(dummy.Results()))
	// Output:
	// example.send_email emails NEW
	// example.halve default NEW
	// a@example.com
	// 0
}

func ExampleResult_Value() {
	ctx := context.Background()
	res, _ := halve.Enqueue(ctx, 42)
	fmt.Println(res.Value())

	res, _ = halve.Enqueue(ctx, 3)
	_, err := res.Value()
	var te *task.Error
	if errors.As(err, &te) {
		fmt.Printf("%s %q %s\n", res.Status, te.Type, te.Message) // no Type: fmt.Errorf says nothing more
	}

	// On a backend that does not run the task at once, the result is not
	// finished yet.
	task.Configure(map[string]task.Backend{"default": task.NewDummyBackend("default", task.BackendOptions{})})
	defer task.Configure(nil)
	res, _ = halve.Enqueue(ctx, 2)
	_, err = res.Value()
	fmt.Println(res.Status, errors.Is(err, task.ErrNotFinished))
	// Output:
	// 21 <nil>
	// FAILED "" 3 is odd
	// NEW true
}

func ExampleTask_GetResult() {
	task.Configure(map[string]task.Backend{"default": task.NewDummyBackend("default", task.BackendOptions{})})
	defer task.Configure(nil)
	ctx := context.Background()

	res, _ := sendEmail.Enqueue(ctx, Email{To: "b@example.com"})
	// Later, perhaps in another request, with only the id:
	again, err := sendEmail.GetResult(ctx, res.ID)
	fmt.Println(again.ID == res.ID, again.Status, err)

	_, err = halve.GetResult(ctx, res.ID)
	fmt.Println(errors.Is(err, task.ErrResultMismatch))

	_, err = sendEmail.GetResult(ctx, task.NewID())
	fmt.Println(errors.Is(err, task.ErrResultNotFound))
	// Output:
	// true NEW <nil>
	// true
	// true
}

// Backend.GetResult returns the untyped RawResult, for code that does not
// know the task's types (dashboards, admin tools).
func ExampleRawResult_Decode() {
	task.Configure(map[string]task.Backend{"default": task.NewDummyBackend("default", task.BackendOptions{})})
	defer task.Configure(nil)
	ctx := context.Background()

	res, _ := halve.Enqueue(ctx, 6)
	raw, err := task.DefaultBackend().GetResult(ctx, res.ID)
	if err != nil {
		panic(err)
	}
	var arg, value int
	_ = raw.DecodeArgs(&arg)
	err = raw.Decode(&value)
	fmt.Println(raw.TaskName, arg, errors.Is(err, task.ErrNotFinished))
	// Output: example.halve 6 true
}

func ExampleConfigure() {
	task.Configure(map[string]task.Backend{
		"default": task.NewImmediateBackend("default", task.BackendOptions{}),
		"later":   task.NewDummyBackend("later", task.BackendOptions{Queues: []string{"emails"}}),
	})
	defer task.Configure(nil)
	ctx := context.Background()

	res, _ := sendEmail.Enqueue(ctx, Email{To: "c@example.com"})
	fmt.Println(res.Backend, res.Status)

	res, _ = sendEmail.Using(task.UseBackend("later")).Enqueue(ctx, Email{To: "c@example.com"})
	fmt.Println(res.Backend, res.Status)

	_, err := halve.Using(task.UseBackend("nowhere")).Enqueue(ctx, 2)
	fmt.Println(errors.Is(err, task.ErrUnknownBackend))

	b, _ := task.BackendFor("later")
	fmt.Printf("%+v\n", b.Features())
	// Output:
	// default COMPLETE
	// later NEW
	// true
	// {Defer:true GetResult:true Priority:true}
}

// A task can ask which attempt it is running in, and where.
var whoAmI = task.Define("example.who_am_i", func(ctx context.Context, _ struct{}) (string, error) {
	info, ok := task.InfoFrom(ctx)
	if !ok {
		return "not running as a task", nil
	}
	return fmt.Sprintf("attempt %d on worker %s", info.Attempt, info.WorkerID), nil
})

func ExampleInfoFrom() {
	ctx := context.Background()
	res, _ := whoAmI.Enqueue(ctx, struct{}{})
	fmt.Println(res.Value())
	fmt.Println(whoAmI.Call(ctx, struct{}{}))
	// Output:
	// attempt 1 on worker immediate <nil>
	// not running as a task <nil>
}

// Hooks see every task's life without wrapping each task.
func ExampleOnFinished() {
	remove := task.OnFinished(func(ctx context.Context, r *task.RawResult) {
		if r.TaskName == halve.Name() {
			fmt.Println("finished:", r.Status, r.Attempts)
		}
	})
	defer remove()

	_, _ = halve.Enqueue(context.Background(), 4)
	_, _ = halve.Enqueue(context.Background(), 5)
	// Output:
	// finished: COMPLETE 1
	// finished: FAILED 1
}

// A worker runs a claimed task with Execute; here by hand.
func ExampleExecute() {
	task.Configure(map[string]task.Backend{"default": task.NewDummyBackend("default", task.BackendOptions{})})
	defer task.Configure(nil)
	ctx := context.Background()

	res, _ := halve.Enqueue(ctx, 100)
	raw, _ := task.DefaultBackend().GetResult(ctx, res.ID)

	// Claim it, run it, store it (a real worker stores it in its backend).
	raw.Status, raw.Attempts, raw.WorkerIDs = task.StatusRunning, 1, []string{"worker-1"}
	task.Execute(ctx, raw)
	task.Finished(ctx, raw)

	var v int
	err := raw.Decode(&v)
	fmt.Println(raw.Status, v, err)
	// Output: COMPLETE 50 <nil>
}
