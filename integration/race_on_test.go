//go:build race

package integration

// raceEnabled: the test binary was built with -race, so the worker binary
// is too (unless $GOTASKS_IT_WORKER_RACE=0).
const raceEnabled = true
