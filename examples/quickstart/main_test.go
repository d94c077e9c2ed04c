package main

// The quick start runs: with nothing configured the task runs at Enqueue
// (its log line goes to stderr).
func Example() {
	main()
	// Output: COMPLETE sent to ann@example.com <nil>
}
