package broker

import (
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Every state change that touches more than one key is one of these Lua
// scripts, so a crash (of a worker or of Redis) never leaves a task
// half-moved. All keys a script touches carry the queue's hash tag
// ({prefix:queue}) and are passed in KEYS; nothing is built from ARGV, so
// the scripts run unchanged on Redis Cluster and behind cluster proxies.
//
// Per queue q (tag T = "{prefix:q}"):
//
//	T:tasks    hash    id → "<attempts> <priority> <seq> <started_us> <worker,ids>\n<envelope>"
//	                   for every unfinished task (NEW, deferred or RUNNING); the
//	                   workers, one per attempt, are '-' for a claim handed back unstarted
//	T:ready    list    ready ids at priority 0 (the default), oldest (smallest seq) first
//	T:pending  zset    ready ids at any other priority, score = (100-priority)·2^45 + seq:
//	                   priority first, FIFO within it
//	T:delayed  zset    deferred ids, score = run_after in unix ms
//	T:running  zset    claimed ids, score = lease expiry in unix ms
//	T:seq      string  last sequence number (FIFO order; also a coarse clock for ties across queues)
//	T:errors   hash    id → msgpack list of the errors of earlier failed attempts (retries)
//	T:first    hash    id → unix µs when the task's first attempt started, for unfinished
//	                   tasks claimed more than once (the header's started_us is the
//	                   latest attempt's); the result keeps it as field a
//	T:wake     list    wake-up token for idle workers (at most one)
//	T:dwake    list    wake-up token for schedulers (a new deferred task)
//	T:r:<id>   hash    the finished result (COMPLETE, FAILED or CANCELLED); expires after ResultTTL
//	T:unique   hash    unique tasks held until they finish (task.Unique without UniqueFor):
//	                   "k:<h>" → id of the holder, "i:<id>" → <h>, where <h> is the hex
//	                   SHA-256 of task.Uniqueness.Key
//	T:u:<h>    string  id of the holder of a UniqueFor window; expires with the window
//	T:failed   zset    ids of FAILED results, score = when the result expires (unix ms): the
//	                   failed tasks an operator looks at; entries past their score are stale
//	T:done     hash    status → how many tasks finished with it (COMPLETE, FAILED, CANCELLED)
//	                   since the queue was first used: throughput for dashboards
//	T:events   channel the queue's events (pub/sub): the scripts that enqueue, claim, retry,
//	                   finish and cancel publish one message per call that changed something,
//	                   listing its tasks (see events.go), if the key of the same name exists;
//	                   in KEYS, so that SPUBLISH (Redis Cluster) stays on the queue's shard
//	T:events   string  "1" while someone listens to the channel: each subscriber sets it
//	                   (PX eventsListenTTL) before subscribing and again every eventsRefresh
//
// A T:unique entry is only held while its holder id is in T:tasks: the
// enqueue script treats any other entry as released. So a task that leaves
// T:tasks by any path (finished, cancelled, deleted) releases its key at
// that moment, atomically with leaving, even if that path does not know
// about uniqueness; deleting the two fields (release_unique in the
// prelude, given T:unique in KEYS) only frees their memory. Uniqueness is
// per queue: the keys carry the queue's tag.
//
// Outside any queue, written by producers without scripts:
//
//	prefix:queues    set   every queue name (GetResult by id alone, workers serving '*')
//	prefix:newqueue  list  wake-up token for '*' workers: a queue was used for the first time
//
// The envelope is msgpack written by Go and opaque to Lua; the header line is
// the mutable state the scripts maintain. A task is in exactly one of
// ready, pending, delayed or running while it is unfinished, and in none
// once its result hash exists.
//
// Why two structures for the ready tasks: a list entry costs Redis ~39
// bytes, a sorted-set entry ~144, and nearly every task runs at the
// default priority, in FIFO order, which a list keeps by itself. Workers
// claim in this order: the pending set's entries at priority > 0, then
// T:ready, then the rest of the pending set (priority < 0). Entries at
// priority 0 in the pending set (written by versions before T:ready) are
// claimed before T:ready: they are older.

// newScript is a script of body with the helpers of prelude that it uses
// (directly or through other helpers), in prelude's order. Lua creates a
// closure for each helper on every call: defining all of them cost each
// call ~1.5 µs, more than a Redis command.
func newScript(body string) *redis.Script {
	src := preludeFor(body) + body
	s := redis.NewScript(src)
	sources[s] = src
	return s
}

// sources holds the text of each script made by newScript, for calls
// that fall back to EVAL (go-redis' Script keeps its text to itself).
// Written only while the package initialises.
var sources = map[*redis.Script]string{}

// helpers are prelude's top-level definitions: a line at column 0 that
// starts with "local " begins one (with the comment lines just above it),
// and it runs until the next.
var helpers = splitPrelude(prelude)

var luaComment = regexp.MustCompile(`--[^\n]*`)

type helper struct {
	name string
	src  string
	use  *regexp.Regexp
}

func splitPrelude(p string) []helper {
	var out []helper
	var comment, cur []string
	flush := func() {
		if len(cur) > 0 {
			out[len(out)-1].src = strings.Join(cur, "\n") + "\n"
			cur = nil
		}
	}
	for _, line := range strings.Split(p, "\n") {
		switch {
		case strings.HasPrefix(line, "--"):
			comment = append(comment, line)
			continue
		case strings.HasPrefix(line, "local "):
			flush()
			name := strings.TrimPrefix(strings.TrimPrefix(line, "local "), "function ")
			name = name[:strings.IndexAny(name, " (=")]
			out = append(out, helper{name: name, use: regexp.MustCompile(`\b` + name + `\b`)})
			cur = append(comment, line)
		default:
			if len(out) > 0 {
				cur = append(cur, comment...)
				cur = append(cur, line)
			}
		}
		comment = nil
	}
	flush()
	return out
}

// preludeFor returns the helpers body needs. Helpers only use helpers
// defined before them, so one pass from the last to the first finds them
// all.
func preludeFor(body string) string {
	need := make([]bool, len(helpers))
	text := luaComment.ReplaceAllString(body, "") // a name in a comment is not a use
	for i := len(helpers) - 1; i >= 0; i-- {
		if helpers[i].use.MatchString(text) {
			need[i] = true
			text += luaComment.ReplaceAllString(helpers[i].src, "")
		}
	}
	var b strings.Builder
	b.WriteString("\n")
	for i, h := range helpers {
		if need[i] {
			b.WriteString(h.src)
		}
	}
	return b.String()
}

// prelude holds the helpers the scripts share. Numbers are formatted with
// %d: Lua's default %.14g would round scores and timestamps, and %.0f (like
// %.14g) goes through glibc's multi-precision float printing, which cost
// ~0.9 µs per number here, as much as a Redis command. Every number the
// scripts format is an integer below 2^53.
const prelude = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
local function num(x) return string.format('%d', x) end
local function score(prio, seq) return num((100 - prio) * 35184372088832 + seq) end
-- parse splits a task value into its header fields and the envelope. A
-- value without a readable header (not written by gotasks) parses as a
-- fresh task whose envelope is the whole value: it then moves like any
-- task and the worker fails it as a bad payload, instead of the script
-- erroring half-way (Redis does not undo a failed script's writes, so a
-- claim would lose every task it had already popped).
local function parse(v)
  local nl = string.find(v, '\n', 1, true)
  if nl then
    local a, p, s, st, w = string.match(string.sub(v, 1, nl - 1), '^(%d+) (%-?%d+) (%d+) (%d+) ?(.*)$')
    if a then return tonumber(a), tonumber(p), tonumber(s), st, w, string.sub(v, nl + 1) end
  end
  return 0, 0, 0, '0', '', v
end
local function pack(a, p, s, st, w, env)
  return string.format('%d %d %d %s %s\n', a, p, s, st, w) .. env
end
-- claimed is the value v of a task once worker claims it at time us: one
-- more attempt, started at us, worker added. It is pack(parse(v)) with
-- those changes, but keeps priority and seq as the strings they are
-- (formatting a number costs more here than the rest of a claim).
local function claimed(v, us, worker)
  local nl = string.find(v, '\n', 1, true)
  if nl then
    local a, ps, w = string.match(string.sub(v, 1, nl - 1), '^(%d+) (%-?%d+ %d+) %d+ ?(.*)$')
    if a then
      if w == '' then w = worker else w = w .. ',' .. worker end
      return string.format('%d %s %s %s', tonumber(a) + 1, ps, us, w) .. string.sub(v, nl)
    end
  end
  local a, p, s, st, w, env = parse(v)
  if w == '' then w = worker else w = w .. ',' .. worker end
  return pack(a + 1, p, s, us, w, env)
end
-- next_seq keeps FIFO order exact within a queue and roughly comparable
-- across queues: max(last+1, 16 per millisecond since 2025-01-01).
local function next_seq(seqkey, ms)
  local last = tonumber(redis.call('GET', seqkey) or '0')
  return math.max(last + 1, (ms - 1735689600000) * 16)
end
local function wake(key)
  if redis.call('LLEN', key) == 0 then redis.call('RPUSH', key, '1') end
end
-- band is the width of one priority's scores in the pending set; scores
-- below band1 are at priority >= 0, and come before T:ready.
local band = 35184372088832
local band1 = '(3553621580972032' -- '(' .. num(101 * band), without a string.format per call
-- ready makes id ready at priority p with sequence number s, the largest
-- of its queue so far: at the tail of T:ready (rlist) or in the pending
-- set.
local function ready(pending, rlist, id, p, s)
  if p == 0 then
    redis.call('RPUSH', rlist, id)
  else
    redis.call('ZADD', pending, score(p, s), id)
  end
end
-- unready removes a ready id (priority p) from T:ready or the pending set.
-- LREM is O(n) in T:ready's length, but it searches from the head, where
-- the next tasks to run are; only cancelling one task by id takes it.
local function unready(pending, rlist, id, p)
  if redis.call('ZREM', pending, id) == 0 and p == 0 then redis.call('LREM', rlist, 1, id) end
end
-- ready_count is the number of ready tasks.
local function ready_count(pending, rlist)
  return redis.call('ZCARD', pending) + redis.call('LLEN', rlist)
end
-- back returns claimed tasks to their original places: items is a list
-- of {id, priority, seq}. Those at priority 0 go back into T:ready in
-- sequence order. T:ready is sorted by seq (enqueue, retry and promote
-- append the largest seq so far; claims pop the head), so the only
-- entries older than a returning task are tasks returned before it, at
-- the head: they are lifted off, merged with the batch and pushed back.
-- This costs O(batch + tasks returned earlier that still wait), never a
-- scan of the list.
local function back(pending, rlist, tasks, items)
  local zero = {}
  for _, it in ipairs(items) do
    if it[2] == 0 then
      zero[#zero + 1] = {it[3], it[1]}
    else
      redis.call('ZADD', pending, score(it[2], it[3]), it[1])
    end
  end
  if #zero == 0 then return end
  table.sort(zero, function(x, y) return x[1] < y[1] end)
  local top = zero[#zero][1]
  local older = {}
  while true do
    local h = redis.call('LINDEX', rlist, 0)
    if not h then break end
    local hs = 0
    local v = redis.call('HGET', tasks, h)
    if v then
      local _, _, s = parse(v)
      hs = s
    end
    if hs >= top then break end
    redis.call('LPOP', rlist)
    older[#older + 1] = {hs, h}
  end
  local all, i, j = {}, 1, 1
  while i <= #zero or j <= #older do
    if j > #older or (i <= #zero and zero[i][1] < older[j][1]) then
      all[#all + 1] = zero[i][2]
      i = i + 1
    else
      all[#all + 1] = older[j][2]
      j = j + 1
    end
  end
  for k = #all, 1, -1 do redis.call('LPUSH', rlist, all[k]) end
end
-- ready_page returns the ids of the ready tasks at claim ranks start to
-- stop (0-based, inclusive), in claim order, and for each its score in
-- the pending set, or false for one in T:ready.
local function ready_page(pending, rlist, start, stop)
  local ids, scores = {}, {}
  local c1 = redis.call('ZCOUNT', pending, '-inf', band1)
  local function z(a, b)
    if a > b then return end
    local r = redis.call('ZRANGE', pending, a, b, 'WITHSCORES')
    for i = 1, #r, 2 do
      ids[#ids + 1] = r[i]
      scores[#scores + 1] = r[i + 1]
    end
  end
  z(start, math.min(stop, c1 - 1))
  local len = redis.call('LLEN', rlist)
  local a, b = math.max(start - c1, 0), math.min(stop - c1, len - 1)
  if a <= b then
    for _, id in ipairs(redis.call('LRANGE', rlist, a, b)) do
      ids[#ids + 1] = id
      scores[#scores + 1] = false
    end
  end
  z(math.max(c1, start - len), stop - len)
  return ids, scores
end
-- content is the part of an envelope that says which task it is: the
-- task name and the arguments, the first two fields of its msgpack array
-- (see appendEnvelope); an envelope it cannot read is all content.
local function content(env)
  local a = string.byte(env, 1)
  if not a or a < 0x98 or a > 0x9f then return env end -- a fixarray of 8 or more
  local function len(at, n)
    local l = 0
    for i = at, at + n - 1 do l = l * 256 + (string.byte(env, i) or 0) end
    return l
  end
  local b, pos = string.byte(env, 2), 0
  if not b then return env end
  if b >= 0xa0 and b <= 0xbf then pos = 3 + b - 0xa0
  elseif b == 0xd9 then pos = 4 + len(3, 1)
  elseif b == 0xda then pos = 5 + len(3, 2)
  elseif b == 0xdb then pos = 7 + len(3, 4)
  else return env end
  b = string.byte(env, pos)
  if b == 0xc0 then return string.sub(env, 1, pos) end
  if b == 0xc4 then return string.sub(env, 1, pos + 1 + len(pos + 1, 1)) end
  if b == 0xc5 then return string.sub(env, 1, pos + 2 + len(pos + 1, 2)) end
  if b == 0xc6 then return string.sub(env, 1, pos + 4 + len(pos + 1, 4)) end
  return env
end
-- same reports whether the stored task value v is the task of envelope
-- env: the same name and arguments (an enqueue sent again).
local function same(v, env)
  local _, _, _, _, _, venv = parse(v)
  return content(venv) == content(env)
end
-- release_unique deletes the T:unique entry (uniq) of task id, if it holds
-- one: a script that ends an unfinished task calls it to free the memory.
local function release_unique(uniq, id)
  local h = redis.call('HGET', uniq, 'i:' .. id)
  if not h then return end
  redis.call('HDEL', uniq, 'i:' .. id)
  if redis.call('HGET', uniq, 'k:' .. h) == id then redis.call('HDEL', uniq, 'k:' .. h) end
end
-- holds reports whether the running task id is still attempt number att.
local function holds(running, tasks, id, att)
  if not redis.call('ZSCORE', running, id) then return nil end
  local v = redis.call('HGET', tasks, id)
  if not v then return nil end
  local a = parse(v)
  if a ~= tonumber(att) then return nil end
  return v
end
-- task_name is the task name of the envelope that starts at byte at of s
-- (the first field of its msgpack array, see appendEnvelope), copying
-- only the name; the empty string if it cannot read one.
local function task_name(s, at)
  local a, b = string.byte(s, at, at + 1)
  if not b or a < 0x98 or a > 0x9f then return '' end
  if b >= 0xa0 and b <= 0xbf then return string.sub(s, at + 2, at + 1 + b - 0xa0) end
  if b == 0xd9 then return string.sub(s, at + 3, at + 2 + (string.byte(s, at + 2) or 0)) end
  if b == 0xda then
    local h, l = string.byte(s, at + 2, at + 3)
    if l then return string.sub(s, at + 4, at + 3 + h * 256 + l) end
  end
  return ''
end
-- value_name is the task name of a stored task value (header and envelope).
local function value_name(v)
  local nl = string.find(v, '\n', 1, true)
  return task_name(v, (nl or 0) + 1)
end
-- event is one task's line of an event message (see events.go): its kind
-- (a letter), id, attempt, and the task name after its length in bytes.
local function event(k, id, att, name)
  return k .. ' ' .. id .. ' ' .. att .. ' ' .. #name .. ' ' .. name
end
-- publisher is cmd, the command to publish events with, if someone
-- listens to them: a subscriber keeps the key named like the channel, ch,
-- while it listens (see events.go). Otherwise the empty string: with no
-- one to hear them, events are not even written, so that a queue nobody
-- watches pays one EXISTS per call for them.
local function publisher(cmd, ch)
  if cmd ~= '' and redis.call('EXISTS', ch) == 1 then return cmd end
  return ''
end
-- emit publishes the events of one call, lines, as one message on the
-- queue's channel ch (one per 1000 lines), stamped t (unix µs, Redis'
-- clock): with cmd, PUBLISH or SPUBLISH (which a server before 7.0 does
-- not know: then PUBLISH). pcall: a user not allowed to publish (ACL
-- channels) loses its events, not the state change they tell of.
local function emit(cmd, ch, t, lines)
  for i = 1, #lines, 1000 do
    local msg = t .. '\n' .. table.concat(lines, '\n', i, math.min(i + 999, #lines))
    local r = redis.pcall(cmd, ch, msg)
    if cmd == 'SPUBLISH' and type(r) == 'table' and r.err then redis.pcall('PUBLISH', ch, msg) end
  end
end
`

// enqueueScript stores tasks and makes them ready, or deferred until their
// run_after. A unique task whose key is held (by an earlier task, or an
// earlier one of the same call) is not stored: it is reported instead.
//
// It is safe to run twice (go-redis sends a command again when its reply
// was lost): an id already taken by a task of the same name and arguments,
// unfinished (T:tasks) or finished (its result), is that task. It is not
// stored again and is reported as a duplicate of itself. An id taken by
// a different task fails the call. It publishes an enqueued event for
// each task it stored, and none for the others: a second run publishes
// nothing.
//
//	KEYS[1] tasks  KEYS[2] pending  KEYS[3] delayed  KEYS[4] seq  KEYS[5] wake  KEYS[6] dwake
//	KEYS[7] unique  KEYS[8] ready  KEYS[9] events (a channel)  KEYS[10...] u:<h> of the
//	        unique tasks, then the result key r:<id> of each task (the last n KEYS)
//	ARGV[1] n, the number of tasks  ARGV[2] the publish command (PUBLISH, SPUBLISH or
//	        the empty string: no events); then n groups of 4: id, priority,
//	        run_after_ms (0: now), envelope; then a group of 4 for each
//	        unique task: its task number (1-based), <h>, window_ms (0: until
//	        it finishes) and the index in KEYS of its u:<h> key
//
// Returns {tasks stored, fresh, then pairs: task number (1-based), holder
// id} for the tasks not stored (the holder is the task's own id when it
// was already stored). fresh is 1 when the queue's seq key did not
// exist (a new queue, or a Redis that lost its data), so that the caller
// registers the queue in the queue set again. Fails without writing
// anything if an id is taken by a different task.
//
// The values and set entries are written at the end, with one command
// per key for the whole call (in chunks: Lua's unpack takes at most a few
// thousand values): a call per task and key cost Redis more than the
// writes themselves. One task that is not unique (a plain Enqueue) takes
// a shorter path.
var enqueueScript = newScript(`
local n = tonumber(ARGV[1])
local pub = publisher(ARGV[2], KEYS[9])
local rk = #KEYS - n -- KEYS[rk + i] is the result key of task i
local last = redis.call('GET', KEYS[4])
local fresh = 0
if not last then fresh = 1 end
last = tonumber(last or '0')
local ms = now_ms()
-- value is the value of a task never claimed.
local function value(prio, s, env)
  return pack(0, prio, s, '0', '', env)
end
local function taken(id)
  return redis.error_reply('gotasks: duplicate task id ' .. id)
end
if n == 1 and #ARGV == 6 then
  -- One task, not unique: the usual Enqueue, in as few commands as can be.
  local id, prio, at, env = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
  local done = redis.call('HGET', KEYS[rk + 1], 't')
  if done then
    if same(done, env) then return {0, fresh, 1, id} end
    return taken(id)
  end
  local seq = nil
  local v
  if at > ms then
    v = value(prio, 0, env)
  else
    seq = math.max(last + 1, (ms - 1735689600000) * 16)
    v = value(prio, seq, env)
  end
  if redis.call('HSETNX', KEYS[1], id, v) == 0 then
    if same(redis.call('HGET', KEYS[1], id), env) then return {0, fresh, 1, id} end
    return taken(id)
  end
  if pub ~= '' then emit(pub, KEYS[9], num(ms * 1000), {event('e', id, 0, task_name(env, 1))}) end
  if seq then
    ready(KEYS[2], KEYS[8], id, prio, seq)
    redis.call('SET', KEYS[4], num(seq))
    wake(KEYS[5])
  else
    redis.call('ZADD', KEYS[3], num(at), id)
    if fresh == 1 then redis.call('SET', KEYS[4], '0') end
    wake(KEYS[6])
  end
  return {1, fresh}
end
-- bulk runs cmd on key for list, in chunks; it returns the replies of
-- HMGET and the sum of the integer replies (EXISTS).
local function bulk(cmd, key, list)
  local all, sum = {}, 0
  for c = 1, #list, 1000 do
    local r
    if key then
      r = redis.call(cmd, key, unpack(list, c, math.min(c + 999, #list)))
    else
      r = redis.call(cmd, unpack(list, c, math.min(c + 999, #list)))
    end
    if type(r) == 'table' then
      for j = 1, #r do all[c + j - 1] = r[j] end
    elseif type(r) == 'number' then
      sum = sum + r
    end
  end
  return all, sum
end
-- Taken ids: each must be the same task sent again (then it is skipped),
-- or the call fails before anything is written.
local ids, rkeys = {}, {}
for i = 1, n do
  ids[i] = ARGV[4 * i - 1]
  rkeys[i] = KEYS[rk + i]
end
local again = {}
local live = bulk('HMGET', KEYS[1], ids)
local _, finished = bulk('EXISTS', nil, rkeys)
for i = 1, n do
  local v = live[i]
  if not v and finished > 0 then v = redis.call('HGET', rkeys[i], 't') end
  if v then
    if not same(v, ARGV[4 * i + 2]) then return taken(ids[i]) end
    again[i] = true
  end
end
local uniq = {}
for j = 3 + 4 * n, #ARGV, 4 do uniq[tonumber(ARGV[j])] = j end
-- stored: the ids of this call that are stored, whose values are only
-- written at the end.
local stored = {}
-- holder returns the id that holds unique key h (window key w), if any,
-- and deletes a T:unique entry whose holder has left T:tasks.
local function holder(h, w)
  local o = redis.call('GET', w)
  if o then return o end
  o = redis.call('HGET', KEYS[7], 'k:' .. h)
  if not o then return nil end
  if stored[o] or redis.call('HEXISTS', KEYS[1], o) == 1 then return o end
  release_unique(KEYS[7], o)
  return nil
end
local seq = nil
local unique = #ARGV > 2 + 4 * n
local values, zready, lready, deferred, dups, bases, events = {}, {}, {}, {}, {}, {}, {}
for i = 1, n do
  local j = 4 * i - 1
  local id, prio, at = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local dup = nil
  local u = uniq[i]
  if again[i] then
    dup = id
  elseif u then
    local h, window, k = ARGV[u + 1], tonumber(ARGV[u + 2]), tonumber(ARGV[u + 3])
    dup = holder(h, KEYS[k])
    if not dup then
      if window > 0 then
        redis.call('SET', KEYS[k], id, 'PX', window)
      else
        redis.call('HSET', KEYS[7], 'k:' .. h, id, 'i:' .. id, h)
      end
    end
  end
  if dup then
    dups[#dups + 1] = i
    dups[#dups + 1] = dup
  else
    local s = 0
    if at > ms then
      deferred[#deferred + 1] = num(at)
      deferred[#deferred + 1] = id
    else
      if not seq then seq = math.max(last + 1, (ms - 1735689600000) * 16) else seq = seq + 1 end
      s = seq
      if prio == 0 then
        lready[#lready + 1] = id
      else
        -- score(prio, s) is score(prio, 0) + s: one string.format per
        -- priority instead of per task (ZADD takes the number in full).
        local base = bases[prio]
        if not base then
          base = tonumber(score(prio, 0))
          bases[prio] = base
        end
        zready[#zready + 1] = base + s
        zready[#zready + 1] = id
      end
    end
    if unique then stored[id] = true end
    values[#values + 1] = id
    values[#values + 1] = value(prio, s, ARGV[j + 3])
    if pub ~= '' then events[#events + 1] = event('e', id, 0, task_name(ARGV[j + 3], 1)) end
  end
end
if #values > 0 then bulk('HSET', KEYS[1], values) end
if #zready > 0 then bulk('ZADD', KEYS[2], zready) end
if #lready > 0 then bulk('RPUSH', KEYS[8], lready) end
if #deferred > 0 then bulk('ZADD', KEYS[3], deferred) end
if seq then
  redis.call('SET', KEYS[4], num(seq))
  wake(KEYS[5])
elseif fresh == 1 then
  redis.call('SET', KEYS[4], '0')
end
if #deferred > 0 then wake(KEYS[6]) end
if pub ~= '' then emit(pub, KEYS[9], num(ms * 1000), events) end
local out = {#values / 2, fresh}
for _, x in ipairs(dups) do out[#out + 1] = x end
return out
`)

// claimScript takes up to n ready tasks of one queue, highest priority
// first, marks them RUNNING and gives them a lease.
//
// It is safe to run twice: the call's token and what it claimed are kept
// in a replay record (one per worker and lane, see Claim), and a call
// whose token the record holds returns those tasks again, those still
// held by that claim, instead of taking more. A claim whose reply was lost
// and sent again therefore delivers its tasks, rather than leaving them
// RUNNING, held by no one, until their lease ends. A replay publishes no
// events: the started events are the first run's.
//
// Tokens are "<prefix>.<seq>", the sequence growing with each call of one
// backend: a copy of an older call that reaches Redis late (its
// connection was given up while the request was still on its way, and
// the call sent again) finds a newer token of the same prefix in the
// record and takes nothing, since no one waits for its reply. Every call
// writes its token to the record, also one that took nothing.
//
//	KEYS[1] pending  KEYS[2] running  KEYS[3] tasks  KEYS[4] wake  KEYS[5] errors  KEYS[6] ready
//	KEYS[7] first  KEYS[8] events (a channel)  KEYS[9] paused
//	KEYS[10] the replay record: "<token> <now_us> <id>/<attempt> ..."; expires with the lease
//	ARGV[1] n  ARGV[2] lease_ms  ARGV[3] worker id  ARGV[4] token (unique per call)
//	ARGV[5] the publish command (PUBLISH, SPUBLISH or the empty string: no events)
//
// Returns {now_us, id1, value1, errors1, first1, id2, ...} with the updated
// values, the errors of earlier attempts (the empty string if none) and
// when the first attempt started (the empty string for a first attempt).
// A task claimed again keeps its first start in T:first.
// If ready tasks remain it leaves a wake token, so that another idle worker
// joins in (a chain of wake-ups instead of a thundering herd).
//
// A paused queue (KEYS[9] exists) gives nothing, and leaves no wake token:
// its idle workers go back to waiting, and Resume wakes them. A replay
// still returns its tasks: they were claimed before the pause.
var claimScript = newScript(`
local n = tonumber(ARGV[1])
local rec = redis.call('GET', KEYS[10])
if rec and string.sub(rec, 1, #ARGV[4] + 1) == ARGV[4] .. ' ' then
  -- The same call again: its tasks, if this claim still holds them.
  local out, us = {}, nil
  for f in string.gmatch(string.sub(rec, #ARGV[4] + 2), '%S+') do
    if not us then
      us = f
      out[1] = us
    else
      local id, att = string.match(f, '^(.*)/(%d+)$')
      local v = holds(KEYS[2], KEYS[3], id, att)
      if v then
        out[#out + 1] = id
        out[#out + 1] = v
        out[#out + 1] = redis.call('HGET', KEYS[5], id) or ''
        out[#out + 1] = redis.call('HGET', KEYS[7], id) or ''
      end
    end
  end
  return out
end
if rec then
  local rp, rs = string.match(rec, '^(%S*)%.(%d+) ')
  local p, q = string.match(ARGV[4], '^(.*)%.(%d+)$')
  if rp and rp == p and tonumber(q) < tonumber(rs) then return {'0'} end
end
if redis.call('EXISTS', KEYS[9]) == 1 then
  redis.call('SET', KEYS[10], ARGV[4] .. ' 0', 'PX', ARGV[2])
  return {'0'}
end
local ids = {}
local function pop(k)
  local z = redis.call('ZPOPMIN', KEYS[1], k)
  for i = 1, #z, 2 do ids[#ids + 1] = z[i] end
end
-- In claim order (see the layout above): priority > 0, T:ready, the rest.
local first = redis.call('ZCOUNT', KEYS[1], '-inf', band1)
if first > 0 then pop(math.min(first, n)) end
if #ids < n then
  local l = redis.call('LPOP', KEYS[6], n - #ids)
  if l then
    for _, id in ipairs(l) do ids[#ids + 1] = id end
  end
end
if #ids < n then pop(n - #ids) end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local us = t[1] .. string.format('%06d', tonumber(t[2]))
local expiry = num(ms + tonumber(ARGV[2]))
local out = {us}
if #ids > 0 then
  local pub = publisher(ARGV[5], KEYS[8])
  -- One command per key for the whole batch, not per task.
  local vals = redis.call('HMGET', KEYS[3], unpack(ids))
  local errs = redis.call('HMGET', KEYS[5], unpack(ids))
  local values, leases, record, events = {}, {}, {ARGV[4], us}, {}
  for i, id in ipairs(ids) do
    local v = vals[i]
    if v then
      -- A task claimed before keeps when it first started: the header
      -- will hold this attempt's start. Only such tasks pay for it.
      local first = ''
      local a, st = string.match(v, '^(%d+) %-?%d+ %d+ (%d+)')
      if a and a ~= '0' then
        first = redis.call('HGET', KEYS[7], id)
        if not first then
          first = ''
          if st ~= '0' then
            first = st
            redis.call('HSET', KEYS[7], id, st)
          end
        end
      end
      v = claimed(v, us, ARGV[3])
      values[#values + 1] = id
      values[#values + 1] = v
      leases[#leases + 1] = expiry
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = v
      out[#out + 1] = errs[i] or ''
      out[#out + 1] = first
      local att = string.match(v, '^%d+')
      record[#record + 1] = id .. '/' .. att
      if pub ~= '' then events[#events + 1] = event('s', id, att, value_name(v)) end
    end
  end
  if #values > 0 then
    redis.call('HSET', KEYS[3], unpack(values))
    redis.call('ZADD', KEYS[2], unpack(leases))
    redis.call('SET', KEYS[10], table.concat(record, ' '), 'PX', ARGV[2])
    if pub ~= '' then emit(pub, KEYS[8], us, events) end
  else
    redis.call('SET', KEYS[10], ARGV[4] .. ' ' .. us, 'PX', ARGV[2])
  end
else
  redis.call('SET', KEYS[10], ARGV[4] .. ' ' .. us, 'PX', ARGV[2])
end
if redis.call('LLEN', KEYS[6]) > 0 or redis.call('ZCARD', KEYS[1]) > 0 then wake(KEYS[4]) end
return out
`)

// peekScript reads the scores of one queue's next n ready tasks, in claim
// order, for the claim planner that weighs several queues (Claim). A task
// in T:ready has no score of its own: it gets the one it would have in
// the pending set, from the sequence number in its header.
//
//	KEYS[1] pending  KEYS[2] ready  KEYS[3] tasks  KEYS[4] paused
//	ARGV[1] n
//
// Returns the scores as strings; none for a paused queue, whose tasks no
// claim takes.
var peekScript = newScript(`
if redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local ids, scores = ready_page(KEYS[1], KEYS[2], 0, tonumber(ARGV[1]) - 1)
for i, id in ipairs(ids) do
  if not scores[i] then
    local _, _, s = parse(redis.call('HGET', KEYS[3], id) or '')
    scores[i] = score(0, s)
  end
end
return scores
`)

// renewScript extends the leases of running tasks that this worker still
// holds.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] cancel
//	ARGV[1] lease_ms, then pairs: id, attempt
//
// Returns the positions (1-based) of the pairs whose lease was lost
// (requeued, or claimed again by another attempt); those are not renewed.
// Positions, not ids: two attempts of one id may be in flight on one worker.
// A held task whose cancel was asked for (see cancel.go) is renewed and
// its position returned negated: the worker that missed the message
// learns it here.
var renewScript = newScript(`
local expiry = num(now_ms() + tonumber(ARGV[1]))
local cancels = redis.call('EXISTS', KEYS[3]) == 1
local out = {}
for i = 2, #ARGV, 2 do
  if holds(KEYS[1], KEYS[2], ARGV[i], ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
    if cancels and redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1 then out[#out + 1] = -i / 2 end
  else
    out[#out + 1] = i / 2
  end
end
return out
`)

// finishScript writes the results of finished attempts of one queue, each
// only if its worker still holds the lease for that attempt (fencing: a
// worker that lost its lease cannot overwrite a newer attempt's result).
// Each task is fenced on its own; the call as a whole is one atomic step.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] errors  KEYS[4] unique  KEYS[5] failed  KEYS[6] done
//	KEYS[7] first  KEYS[8] events (a channel)  KEYS[9] progress  KEYS[10] cancel
//	KEYS[10+i] the result key of task i
//	ARGV[1] ttl_ms  ARGV[2] the FAILED status
//	ARGV[3] the publish command (PUBLISH, SPUBLISH or the empty string: no events)
//	ARGV[4] the CANCELLED status (a running task whose cancel was asked for, see cancel.go)
//	ARGV    then a group of 7 for each task i: id, attempt, status, value, error,
//	        errors of every failed attempt, its last progress ('' if none; kept
//	        in the result as field p)
//
// Returns for each task its finish time in unix µs, 0 when the lease was
// lost, or -1 when its result key holds another type (nothing is written
// for either). A finish sent again after its reply was lost finds the
// result it wrote (the same attempt and status) and returns its time: it
// is safe to run twice, and publishes events only for the tasks whose
// result it wrote (one message for the call). A task's unique key (if any) is
// released by the HDEL from tasks; the release_unique calls only free the
// T:unique entries' memory.
//
// Why one call for many tasks: the finish of one task is two writes of its
// own (the result and its expiry); the fencing reads, the deletes, the
// clock and the counters each take one command for the whole batch, and
// the script call's own cost is paid once, not per task.
var finishScript = newScript(`
local ttl = tonumber(ARGV[1])
local pub = publisher(ARGV[3], KEYS[8])
local n = (#ARGV - 4) / 7
local ids = {}
for i = 1, n do ids[i] = ARGV[7 * i - 2] end
local vals = redis.call('HMGET', KEYS[2], unpack(ids))
local leased = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local firsts = redis.call('HMGET', KEYS[7], unpack(ids))
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local us = t[1] .. string.format('%06d', tonumber(t[2]))
local out, fin, seen, failed, counts, events = {}, {}, {}, {}, {}, {}
local reported = false
for i = 1, n do
  local j = 7 * i - 2
  local id, v = ARGV[j], vals[i]
  out[i] = 0
  -- The attempt in the header must be the caller's, and the task in
  -- running; an id given twice is finished once. (Nothing here may raise
  -- an error: Redis would keep the writes made for the tasks before.)
  local a = v and string.match(v, '^(%d+) ')
  if not (a and leased[i] and tonumber(a) == tonumber(ARGV[j + 1])) and not seen[id] then
    -- Not held: unless this very finish was already stored (the call is
    -- sent again after its reply was lost). Only the holder of the
    -- attempt writes a result under it.
    local r = redis.pcall('HMGET', KEYS[10 + i], 't', 's', 'f')
    if type(r) == 'table' and not r.err and r[1] and r[2] == ARGV[j + 2]
        and tonumber(string.match(r[1], '^(%d+) ') or -1) == tonumber(ARGV[j + 1]) then
      out[i] = tonumber(r[3])
      seen[id] = true
    end
  elseif a and leased[i] and not seen[id] then
    local st = ARGV[j + 2]
    -- pcall: a result key that holds another type (written by something
    -- else) fails this task alone, not the script.
    local w
    if ARGV[j + 6] == '' then
      w = redis.pcall('HSET', KEYS[10 + i], 't', v, 's', st, 'f', us, 'v', ARGV[j + 3], 'e', ARGV[j + 4], 'x', ARGV[j + 5], 'a', firsts[i] or '')
    else
      w = redis.pcall('HSET', KEYS[10 + i], 't', v, 's', st, 'f', us, 'v', ARGV[j + 3], 'e', ARGV[j + 4], 'x', ARGV[j + 5], 'a', firsts[i] or '', 'p', ARGV[j + 6])
      reported = true
    end
    if type(w) == 'table' and w.err then
      out[i] = -1
    else
      redis.call('PEXPIRE', KEYS[10 + i], ttl)
      seen[id] = true
      fin[#fin + 1] = id
      local k = 'c'
      if st == ARGV[2] then
        k = 'f'
        failed[#failed + 1] = num(ms + ttl)
        failed[#failed + 1] = id
      elseif st == ARGV[4] then
        -- The cancel's token (see cancelScript): that call, sent again,
        -- finds its own cancellation.
        k = 'x'
        local tok = redis.call('HGET', KEYS[10], id)
        if tok then redis.call('HSET', KEYS[10 + i], 'c', tok) end
      end
      if pub ~= '' then events[#events + 1] = event(k, id, a, value_name(v)) end
      counts[st] = (counts[st] or 0) + 1
      out[i] = us
    end
  end
end
if #fin == 0 then return out end
redis.call('ZREM', KEYS[1], unpack(fin))
redis.call('HDEL', KEYS[2], unpack(fin))
redis.call('HDEL', KEYS[3], unpack(fin))
redis.call('HDEL', KEYS[7], unpack(fin))
-- The live progress of a task that reported some (this attempt, or an
-- earlier one's, left by a retry or a reap) goes with it.
if reported or redis.call('EXISTS', KEYS[9]) == 1 then redis.call('HDEL', KEYS[9], unpack(fin)) end
-- A cancel asked for while the task ran ends with it, whatever its outcome.
if redis.call('EXISTS', KEYS[10]) == 1 then redis.call('HDEL', KEYS[10], unpack(fin)) end
if redis.call('EXISTS', KEYS[4]) == 1 then
  for _, id in ipairs(fin) do release_unique(KEYS[4], id) end
end
if #failed > 0 then
  -- Trimming the expired entries here keeps the index as long as the
  -- stored FAILED results, at O(1) amortised per failure.
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', num(ms))
  redis.call('ZADD', KEYS[5], unpack(failed))
end
for st, c in pairs(counts) do redis.call('HINCRBY', KEYS[6], st, c) end
if pub ~= '' then emit(pub, KEYS[8], us, events) end
return out
`)

// retryScript schedules the next attempt of a task whose attempt failed,
// if this worker still holds its lease: back to pending at once, or to
// delayed until run_after. The errors so far are kept for the result.
//
// It is safe to run twice: when the lease is not held, the retry may be
// this very call's, whose reply was lost. The errors it stored then still
// stand: in T:errors while the next attempt has not finished, in the
// result's errors once it completed. Only the holder of the attempt writes
// that list of errors (it ends with the attempt's own). The retried event
// is published only by the run that made the change.
//
//	KEYS[1] running  KEYS[2] tasks  KEYS[3] pending  KEYS[4] delayed  KEYS[5] seq
//	KEYS[6] wake  KEYS[7] dwake  KEYS[8] errors  KEYS[9] ready  KEYS[10] result
//	KEYS[11] events (a channel)  KEYS[12] cancel
//	ARGV[1] id  ARGV[2] attempt  ARGV[3] run_after_ms  ARGV[4] errors of every failed attempt
//	ARGV[5] the publish command (PUBLISH, SPUBLISH or the empty string: no events)
//
// Returns 1, 0 when the lease was lost, or -2 (and writes nothing) when
// the task's cancel was asked for while it ran: it is not retried (see
// cancel.go).
var retryScript = newScript(`
local v = holds(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not v then
  if ARGV[4] ~= '' and (redis.call('HGET', KEYS[8], ARGV[1]) == ARGV[4]
      or redis.call('HGET', KEYS[10], 'x') == ARGV[4]) then return 1 end
  return 0
end
if redis.call('HEXISTS', KEYS[12], ARGV[1]) == 1 then return -2 end
local ms = now_ms()
local at = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[8], ARGV[1], ARGV[4])
if at > ms then
  redis.call('ZADD', KEYS[4], num(at), ARGV[1])
  wake(KEYS[7])
else
  local seq = next_seq(KEYS[5], ms)
  redis.call('SET', KEYS[5], num(seq))
  local a, p, s, st, w, env = parse(v)
  redis.call('HSET', KEYS[2], ARGV[1], pack(a, p, seq, st, w, env))
  ready(KEYS[3], KEYS[9], ARGV[1], p, seq)
  wake(KEYS[6])
end
local pub = publisher(ARGV[5], KEYS[11])
if pub ~= '' then emit(pub, KEYS[11], num(ms * 1000), {event('r', ARGV[1], ARGV[2], value_name(v))}) end
return 1
`)

// requeueScript hands running tasks straight back to their queue, at their
// original place (graceful shutdown), if this worker still holds them.
// With undo, for tasks claimed that never started, the claim's delivery is
// undone as well: the worker it added becomes '-' (no delivery; the list
// stays one entry per attempt) and, when no attempt was delivered, the
// start time is cleared. The attempt number stays: it is the fencing
// token of that claim, and giving it back would let a later claim hold the
// same token as a claim this one raced with (an unclaim sent twice, after
// another worker claimed the task in between).
//
//	KEYS[1] running  KEYS[2] pending  KEYS[3] tasks  KEYS[4] wake  KEYS[5] ready  KEYS[6] cancel
//	ARGV[1] undo (1 or 0), then pairs: id, attempt
//
// A task whose cancel was asked for is not requeued: its lease is made to
// expire now, and the reaper ends it CANCELLED (see cancel.go).
//
// Returns the number of tasks requeued.
var requeueScript = newScript(`
local items = {}
local cancels = redis.call('EXISTS', KEYS[6]) == 1
for i = 2, #ARGV, 2 do
  local v = holds(KEYS[1], KEYS[3], ARGV[i], ARGV[i + 1])
  if v and cancels and redis.call('HEXISTS', KEYS[6], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[i])
  elseif v then
    local a, p, s, st, w, env = parse(v)
    redis.call('ZREM', KEYS[1], ARGV[i])
    if ARGV[1] == '1' and w ~= '' then
      local cut = string.find(w, ',[^,]*$')
      if cut then w = string.sub(w, 1, cut) .. '-' else w = '-' end
      if not string.find(w, '[^-,]') then st = '0' end
      redis.call('HSET', KEYS[3], ARGV[i], pack(a, p, s, st, w, env))
    end
    items[#items + 1] = {ARGV[i], p, s}
  end
end
back(KEYS[2], KEYS[5], KEYS[3], items)
if #items > 0 then wake(KEYS[4]) end
return #items
`)

// reapScript returns tasks whose lease expired (their worker died or hung)
// to their queue, at their original place, so that they run again.
//
//	KEYS[1] running  KEYS[2] pending  KEYS[3] tasks  KEYS[4] wake  KEYS[5] ready  KEYS[6] cancel
//	ARGV[1] limit
//
// A task whose cancel was asked for is left in T:running, for
// cancelExpiredScript to end CANCELLED (its result key must be in KEYS).
//
// Returns {requeued, next lease expiry in unix ms or -1, ids left to cancel...}.
var reapScript = newScript(`
local ms = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(ms), 'LIMIT', 0, ARGV[1])
local cancels = redis.call('EXISTS', KEYS[6]) == 1
local items, left = {}, {}
local n = 0
for _, id in ipairs(ids) do
  if cancels and redis.call('HEXISTS', KEYS[6], id) == 1 then
    left[#left + 1] = id
  else
    n = n + 1
    redis.call('ZREM', KEYS[1], id)
    local v = redis.call('HGET', KEYS[3], id)
    if v then
      local a, p, s = parse(v)
      items[#items + 1] = {id, p, s}
    end
  end
end
back(KEYS[2], KEYS[5], KEYS[3], items)
if n > 0 then wake(KEYS[4]) end
local out = {n, -1}
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt > 0 then out[2] = tonumber(nxt[2]) end
for _, id in ipairs(left) do out[#out + 1] = id end
return out
`)

// promoteScript moves deferred tasks whose run_after has come to the ready
// set. Idempotent, so any number of schedulers may run it.
//
//	KEYS[1] delayed  KEYS[2] pending  KEYS[3] tasks  KEYS[4] seq  KEYS[5] wake  KEYS[6] ready
//	ARGV[1] limit
//
// Returns {promoted, next run_after in unix ms or -1}.
var promoteScript = newScript(`
local ms = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(ms), 'LIMIT', 0, ARGV[1])
local seq = nil
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local v = redis.call('HGET', KEYS[3], id)
  if v then
    if not seq then seq = next_seq(KEYS[4], ms) else seq = seq + 1 end
    local a, p, s, st, w, env = parse(v)
    redis.call('HSET', KEYS[3], id, pack(a, p, seq, st, w, env))
    ready(KEYS[2], KEYS[6], id, p, seq)
  end
end
if seq then
  redis.call('SET', KEYS[4], num(seq))
  wake(KEYS[5])
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#ids, -1} end
return {#ids, tonumber(nxt[2])}
`)

// countScript reads the sizes of a queue's sets in one step.
//
//	KEYS[1] ready  KEYS[2] pending  KEYS[3] delayed  KEYS[4] running  KEYS[5] paused
//
// Returns {ready, deferred, running, paused (0/1)}.
var countScript = redis.NewScript(`
return {redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]), redis.call('EXISTS', KEYS[5])}
`)

// getScript reads one task's state in one consistent step.
//
//	KEYS[1] tasks  KEYS[2] running  KEYS[3] result  KEYS[4] delayed  KEYS[5] errors  KEYS[6] first
//	KEYS[7] progress  KEYS[8] cancel
//	ARGV[1] id
//
// Returns {'done', value, status, finished_us, return, error, errors, first_us, progress},
// {'live', value, running (0/1), errors, deferred until ms or -1, first_us, progress,
// cancel asked for (0/1)}
// or nil; first_us is the empty string for a task claimed at most once,
// progress for a task that reported none.
var getScript = redis.NewScript(`
local r = redis.call('HMGET', KEYS[3], 't', 's', 'f', 'v', 'e', 'x', 'a', 'p')
if r[1] then return {'done', r[1], r[2], r[3], r[4], r[5], r[6] or '', r[7] or '', r[8] or ''} end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return nil end
local running = 0
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then running = 1 end
local errs = redis.call('HGET', KEYS[5], ARGV[1]) or ''
local at = redis.call('ZSCORE', KEYS[4], ARGV[1])
if at then at = tonumber(at) else at = -1 end
return {'live', v, running, errs, at, redis.call('HGET', KEYS[6], ARGV[1]) or '', redis.call('HGET', KEYS[7], ARGV[1]) or '',
  redis.call('HEXISTS', KEYS[8], ARGV[1])}
`)
