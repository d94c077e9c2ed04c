package task

// Unregister removes a task definition, for tests that define tasks which
// must not outlive them (go test -count=N runs every test again in the
// same process, whose registry is global).
func Unregister(name string) {
	tasks.Lock()
	defer tasks.Unlock()
	delete(tasks.byName, name)
}
