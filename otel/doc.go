// Package gotasksotel instruments gotasks with OpenTelemetry: a producer
// span per enqueue call, a consumer span per attempt of a task, and the
// messaging metrics, after the OpenTelemetry semantic conventions for
// messaging (messaging.system "gotasks", the queue as the destination).
//
// It lives in a module of its own (github.com/gotasks/gotasks/otel), so
// that gotasks itself does not depend on OpenTelemetry. It plugs into
// gotasks through middleware: Install adds it to every backend and worker
// of the process, or New returns an Instrumentation whose EnqueueMiddleware
// and RunMiddleware can be given to one backend or worker
// (task.BackendOptions, broker.Options, worker.Options).
//
// The producer's trace context travels with each task in its metadata
// (task.Message.Metadata), written and read by the propagator, so that the
// consumer span of every attempt, in whatever process runs it, is linked
// to the span of the enqueue (SpanMode Link, the default) or is its child
// (SpanMode Child).
//
// Spans:
//
//   - "publish <queue>", kind PRODUCER, one per Enqueue or EnqueueMany
//     call (a batch is one span, with messaging.batch.message_count):
//     messaging.system, messaging.operation.type "send",
//     messaging.operation.name "publish", messaging.destination.name,
//     messaging.message.id (a single message), gotasks.task.name,
//     gotasks.backend.
//   - "process <queue>", kind CONSUMER, one per attempt:
//     messaging.system, messaging.operation.type "process",
//     messaging.operation.name "process", messaging.destination.name,
//     messaging.message.id (the task id), gotasks.task.name,
//     gotasks.task.attempt, gotasks.worker.id, gotasks.backend.
//
// A failure (an error, a panic, a timeout) is recorded on the span as an
// exception event (with the task's traceback as exception.stacktrace), the
// status Error and error.type: the Type of the task's *task.Error (such as
// "gotasks.Panic" or "*fs.PathError"), or "_OTHER". A success sets the
// status Ok.
//
// Metrics (the meter "github.com/gotasks/gotasks/otel"):
//
//   - messaging.client.sent.messages (counter, {message}): messages
//     enqueued, by messaging.destination.name and error.type;
//   - messaging.client.operation.duration (histogram, s): enqueue calls;
//   - messaging.client.consumed.messages (counter, {message}): attempts;
//   - messaging.process.duration (histogram, s): attempts, also by
//     gotasks.task.name.
//
// Every measurement has messaging.system and messaging.operation.name;
// error.type is there only for a failure, so that an outcome is either no
// error.type (success) or the kind of failure.
//
// Nothing is injected or extracted unless a propagator is set: with the
// defaults, that is the global one (otel.SetTextMapPropagator), which does
// nothing until the program sets one, typically
// propagation.TraceContext{} (with propagation.Baggage{}).
package gotasksotel
