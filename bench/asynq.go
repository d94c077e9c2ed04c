package main

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/gotasks/gotasks/serializer"
)

// asynqType is the benchmark task's type name in asynq.
const asynqType = "bench:noop"

// asynqHandler is the asynq twin of noop: asynq hands the handler raw
// bytes, so it decodes them itself, as gotasks does before calling noop.
var asynqHandler = asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
	var p Payload
	if err := serializer.Default.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	taskStarted(p.Seq)
	taskWait(ctx)
	return nil
})

type asynqSys struct {
	opt    asynq.RedisConnOpt
	client *asynq.Client
	rdb    redis.UniversalClient // for counting, outside asynq's own pool
}

// openAsynq opens a producer (asynq.Client) with asynq's defaults.
func openAsynq(url string) (system, error) {
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		return nil, fmt.Errorf("asynq: parse %s: %w", url, err)
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("asynq: unexpected redis client type")
	}
	return &asynqSys{opt: opt, client: asynq.NewClient(opt), rdb: rdb}, nil
}

func (s *asynqSys) Name() string { return nameAsynq }

func (s *asynqSys) Enqueue(ctx context.Context, p Payload) error {
	b, err := serializer.Default.Marshal(p)
	if err != nil {
		return fmt.Errorf("asynq: encode payload: %w", err)
	}
	if _, err := s.client.EnqueueContext(ctx, asynq.NewTask(asynqType, b)); err != nil {
		return fmt.Errorf("asynq: enqueue: %w", err)
	}
	return nil
}

// EnqueueBatch: asynq v0.26 has no batch or pipelined enqueue in its API.
func (s *asynqSys) EnqueueBatch(context.Context, []Payload) error { return errNoBatch }

// Fill enqueues n tasks one per call from 16 goroutines, the fastest way
// its API offers.
func (s *asynqSys) Fill(ctx context.Context, n int) error {
	return parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		return s.Enqueue(ctx, newPayload(int64(i)))
	})
}

// Unfinished reads asynq's pending and active lists directly: its
// Inspector's queue info also samples memory, too heavy to poll.
func (s *asynqSys) Unfinished(ctx context.Context) (int64, error) {
	pipe := s.rdb.Pipeline()
	p := pipe.LLen(ctx, "asynq:{default}:pending")
	a := pipe.LLen(ctx, "asynq:{default}:active")
	r := pipe.ZCard(ctx, "asynq:{default}:retry")
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("asynq: count: %w", err)
	}
	return p.Val() + a.Val() + r.Val(), nil
}

// StartWorker runs an asynq.Server with its defaults but the concurrency
// and a quiet log.
func (s *asynqSys) StartWorker(_ context.Context, c int) (func() error, error) {
	srv := asynq.NewServer(s.opt, asynq.Config{
		Concurrency: c,
		Queues:      map[string]int{"default": 1},
		LogLevel:    asynq.WarnLevel,
	})
	if err := srv.Start(asynqHandler); err != nil {
		return nil, fmt.Errorf("asynq: start server: %w", err)
	}
	return stopOnce(func() error {
		srv.Shutdown()
		return nil
	}), nil
}

func (s *asynqSys) Close() error {
	err := s.client.Close()
	if cerr := s.rdb.Close(); err == nil {
		err = cerr
	}
	return err
}
