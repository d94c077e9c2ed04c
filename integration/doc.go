// Package integration holds end-to-end tests of gotasks against a real
// redis-server and real cmd/worker processes. It has no non-test code; run
//
//	go test -race -count=1 ./integration/
//
// The tests start their own redis-server on a free port (from $PATH, or
// $REDIS_SERVER) and build cmd/worker once. Without a redis-server they skip,
// except when $CI is set: then they fail, so that CI never passes silently.
package integration
