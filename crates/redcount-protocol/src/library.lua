#!lua name=redcount
-- redcount's coordination protocol: every state change of a job is one call of a function below,
-- so each change is atomic on a single Redis, after a restore from a checkpoint, on replicas, and on a
-- Raft state machine that re-executes every call. docs/PROTOCOL.md describes every function. Rules:
--   * time is an argument (`now`, ms): no TIME, no TTLs, no XAUTOCLAIM, no XPENDING IDLE;
--   * no randomness and no replies that depend on hash iteration order;
--   * explicit stream ids everywhere (tasks `seq-0`, done `n-0`, dead `n-0`);
--   * validate every argument before the first write (Redis has no rollback).
-- KEYS are always the nine keys of one job, in the order of `JobKeys::all` in keys.rs.

local LIBRARY_VERSION = 14

local K_TASKS, K_LEASES, K_COUNTS, K_META, K_DONE, K_DEAD, K_INFLIGHT, K_WORKERS, K_EVENTS = 1, 2, 3, 4, 5, 6, 7, 8, 9
local GROUP = 'workers'

local function fail(message)
  error({ err = 'ERR redcount: ' .. message })
end

local function int(value, what)
  local n = tonumber(value)
  if n == nil or n ~= math.floor(n) then
    fail(what .. ' must be an integer, got ' .. tostring(value))
  end
  return n
end

local function require_job(keys)
  if redis.call('EXISTS', keys[K_META]) == 0 then
    error({ err = 'NOJOB redcount: no job at ' .. keys[K_META] .. ' (never created, or Redis lost its data)' })
  end
end

local function meta_int(keys, field)
  return tonumber(redis.call('HGET', keys[K_META], field) or '0')
end

-- A stream entry's flat field/value list as a table.
local function entry_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

-- A task's fields as a table, read from its stream entry.
local function task_fields(keys, id)
  local found = redis.call('XRANGE', keys[K_TASKS], id, id)
  if #found == 0 then
    fail('task ' .. id .. ' is not in ' .. keys[K_TASKS])
  end
  return entry_table(found[1][2])
end

-- inflight hash value: "attempts:claimed_ms:worker"
local function inflight(keys, id)
  local v = redis.call('HGET', keys[K_INFLIGHT], id)
  if not v then
    return 0, 0, ''
  end
  local attempts, claimed, worker = string.match(v, '^(%d+):(%d+):(.*)$')
  return tonumber(attempts), tonumber(claimed), worker
end

local function lease(keys, id, now, lease_ms, attempts, worker)
  redis.call('ZADD', keys[K_LEASES], now + lease_ms, id)
  redis.call('HSET', keys[K_INFLIGHT], id, attempts .. ':' .. now .. ':' .. worker)
end

-- Forget a delivered task: ack it and drop its lease. Returns what inflight knew of it.
local function retire(keys, id)
  local attempts, claimed, holder = inflight(keys, id)
  redis.call('XACK', keys[K_TASKS], GROUP, id)
  redis.call('ZREM', keys[K_LEASES], id)
  redis.call('HDEL', keys[K_INFLIGHT], id)
  return attempts, claimed, holder
end

-- Give up on a delivered task `t` (its fields, read before any write): ack it, drop its lease, record it.
local function bury(keys, id, t, now, worker, attempts, message)
  retire(keys, id)
  local n = redis.call('HINCRBY', keys[K_META], 'dead', 1)
  redis.call('XADD', keys[K_DEAD], n .. '-0', 'task', id, 'path', t.path, 'start', t.start, 'end', t['end'],
    'failed_ms', now, 'worker', worker, 'attempts', attempts, 'error', message)
end

local function task_reply(id, t, attempts)
  return { id, t.path, t.start, t['end'], t.fmt, t.injected_ms, attempts }
end

-- Hand task `id` (fields `t`) to `worker` as its `attempts`-th delivery: the pending entry moves to the
-- worker at `now` (pinned, so every replica records the same entry), the task gets a lease, and the
-- reply entry is returned.
local function deliver(keys, id, t, now, lease_ms, attempts, worker)
  redis.call('XCLAIM', keys[K_TASKS], GROUP, worker, 0, id, 'TIME', now, 'JUSTID')
  lease(keys, id, now, lease_ms, attempts, worker)
  return task_reply(id, t, attempts)
end

local function is_finished(keys)
  local m = redis.call('HMGET', keys[K_META], 'state', 'tasks', 'delivered', 'done', 'dead')
  local tasks = tonumber(m[2] or '0')
  return m[1] == 'sealed' and tonumber(m[3] or '0') == tasks and redis.call('ZCARD', keys[K_LEASES]) == 0
    and tonumber(m[4] or '0') + tonumber(m[5] or '0') == tasks
end

-- create(now, run_id, field, value, ...): make the job (idempotent). Returns {created 0/1, run_id}.
local function create(keys, args)
  local now = int(args[1], 'now')
  local run_id = args[2]
  if run_id == nil or (#args - 2) % 2 ~= 0 then
    fail('create takes now, run_id and field/value pairs')
  end
  if redis.call('EXISTS', keys[K_META]) == 1 then
    return { 0, redis.call('HGET', keys[K_META], 'run_id') }
  end
  if redis.call('EXISTS', keys[K_TASKS]) == 0 then
    redis.call('XGROUP', 'CREATE', keys[K_TASKS], GROUP, '0', 'MKSTREAM')
  end
  redis.call('HSET', keys[K_META], 'state', 'open', 'run_id', run_id, 'created_ms', now, 'tasks', 0, 'bytes', 0,
    'last_seq', 0, 'delivered', 0, 'delivered_id', '0-0', 'done', 0, 'done_bytes', 0, 'dead', 0, 'words', 0,
    'recomputed', 0, 'redelivered', 0, 'duplicates', 0, 'increments', 0, 'commits', 0, 'speculated', 0, 'events', 0)
  for i = 3, #args, 2 do
    redis.call('HSET', keys[K_META], args[i], args[i + 1])
  end
  return { 1, run_id }
end

-- enqueue(now, {seq, path, start, end, fmt}...): add tasks with ids `seq-0`. A task whose seq is not above
-- the job's last one is already there (a re-send after a crash or rollback) and is skipped.
local function enqueue(keys, args)
  local now = int(args[1], 'now')
  if (#args - 1) % 5 ~= 0 then
    fail('enqueue takes now and groups of seq, path, start, end, fmt')
  end
  require_job(keys)
  local last_seq = meta_int(keys, 'last_seq')
  local prev, fresh = -1, {}
  for i = 2, #args, 5 do
    local seq = int(args[i], 'seq')
    local s, e = int(args[i + 2], 'start'), int(args[i + 3], 'end')
    if seq <= prev then
      fail('task sequence numbers must increase within one enqueue, got ' .. seq .. ' after ' .. prev)
    end
    if s < 0 or e < s then
      fail('bad byte range ' .. s .. '..' .. e .. ' for ' .. args[i + 1])
    end
    prev = seq
    if seq > last_seq then
      fresh[#fresh + 1] = i
    end
  end
  if #fresh > 0 and redis.call('HGET', keys[K_META], 'state') ~= 'open' then
    fail('job is sealed: no new tasks can be added to ' .. keys[K_TASKS])
  end
  local bytes = 0
  for _, i in ipairs(fresh) do
    redis.call('XADD', keys[K_TASKS], args[i] .. '-0', 'path', args[i + 1], 'start', args[i + 2],
      'end', args[i + 3], 'fmt', args[i + 4], 'injected_ms', now)
    bytes = bytes + (tonumber(args[i + 3]) - tonumber(args[i + 2]))
  end
  if #fresh > 0 then
    redis.call('HINCRBY', keys[K_META], 'tasks', #fresh)
    redis.call('HINCRBY', keys[K_META], 'bytes', bytes)
    redis.call('HSET', keys[K_META], 'last_seq', prev)
  end
  return { #fresh, (#args - 1) / 5 - #fresh }
end

-- seal(now, expected_tasks): no more tasks will come. expected_tasks > 0 must match the job's task count
-- (else the reply says how many are there, so the driver can re-send what a rollback lost).
local function seal(keys, args)
  local now = int(args[1], 'now')
  local expected = int(args[2] or '0', 'expected_tasks')
  require_job(keys)
  local tasks = meta_int(keys, 'tasks')
  if expected > 0 and tasks ~= expected then
    return { 0, tasks }
  end
  if redis.call('HGET', keys[K_META], 'state') ~= 'sealed' then
    redis.call('HSET', keys[K_META], 'state', 'sealed', 'sealed_ms', now)
  end
  return { 1, tasks }
end

-- Durations (committed - claimed, ms) of the last 100 commits: all of them, and those of `worker`.
local function recent_durations(keys, worker)
  local all, mine = {}, {}
  for _, entry in ipairs(redis.call('XREVRANGE', keys[K_DONE], '+', '-', 'COUNT', 100)) do
    local d = entry_table(entry[2])
    local took = tonumber(d.committed_ms or '0') - tonumber(d.claimed_ms or '0')
    all[#all + 1] = took
    if d.worker == worker then
      mine[#mine + 1] = took
    end
  end
  table.sort(all)
  table.sort(mine)
  return all, mine
end

-- The task to run speculatively, if any: one held by another worker for longer than `factor` times the
-- p90 of recent task durations (and at least min_ms). Oldest claim first, ties by id, so the choice does
-- not depend on the hash's iteration order. Only a worker that has recently committed (3 of the last
-- 100 commits) at no more than twice the median duration speculates: a straggler takes nothing from
-- others. Only first attempts are copied, so a task never ping-pongs between workers.
local function straggling_task(keys, now, worker, max_attempts, factor, min_ms)
  local all, mine = recent_durations(keys, worker)
  if #all < 10 then
    return nil
  end
  local median = all[math.ceil(#all / 2)]
  if #mine < 3 or mine[math.ceil(#mine / 2)] > 2 * median then
    return nil
  end
  local threshold = math.max(all[math.ceil(#all * 0.9)] * factor, min_ms)
  local flat = redis.call('HGETALL', keys[K_INFLIGHT])
  local best, best_claimed
  for i = 1, #flat, 2 do
    local attempts, claimed, holder = string.match(flat[i + 1], '^(%d+):(%d+):(.*)$')
    attempts, claimed = tonumber(attempts), tonumber(claimed)
    if holder ~= worker and attempts == 1 and attempts < max_attempts and now - claimed > threshold then
      if best == nil or claimed < best_claimed or (claimed == best_claimed and flat[i] < best) then
        best, best_claimed = flat[i], claimed
      end
    end
  end
  return best
end

-- Claim's reply: finished?, earliest lease deadline, newest task and done ids, then the tasks.
local function claim_reply(keys, tasks)
  local first = redis.call('ZRANGE', keys[K_LEASES], 0, 0, 'WITHSCORES')
  local next_deadline = -1
  if #first > 0 then
    next_deadline = tonumber(first[2])
  end
  local reply = { is_finished(keys) and 1 or 0, next_deadline, meta_int(keys, 'last_seq') .. '-0',
    meta_int(keys, 'done') .. '-0' }
  for _, task in ipairs(tasks) do
    reply[#reply + 1] = task
  end
  return reply
end

-- claim(now, worker, lease_ms, max_tasks, max_bytes, max_attempts, live_window_ms, spec_factor, spec_min_ms,
--       token)
-- Re-delivers expired leases first (burying tasks that used up max_attempts), then new tasks: at most
-- max_tasks, at most max_bytes (but always one), and at most a fair share of what is left undelivered,
-- so the tail of a job is spread over the live workers. With nothing else to hand out and spec_factor > 0,
-- a straggler's task is handed out speculatively (the first commit wins, the other is a duplicate). A
-- token seen in this worker's previous claim marks a retry: it gets that claim's tasks again. Reply:
-- {finished, next_lease_deadline or -1, last task id, last done id, {task}...}
local function claim(keys, args)
  local now, worker = int(args[1], 'now'), args[2]
  local lease_ms, max_tasks = int(args[3], 'lease_ms'), int(args[4], 'max_tasks')
  local max_bytes, max_attempts = int(args[5], 'max_bytes'), int(args[6], 'max_attempts')
  local live_window = int(args[7], 'live_window_ms')
  local spec_factor, spec_min = tonumber(args[8] or '0'), int(args[9] or '0', 'spec_min_ms')
  if spec_factor == nil or spec_factor < 0 then
    fail('spec_factor must be a number >= 0, got ' .. tostring(args[8]))
  end
  if worker == nil or worker == '' or lease_ms <= 0 or max_tasks <= 0 or max_attempts <= 0 then
    fail('claim needs a worker name and positive lease_ms, max_tasks, max_attempts')
  end
  require_job(keys)
  redis.call('ZADD', keys[K_WORKERS], now, worker)

  -- The token, unique to this claim call of this worker: the same token again is the same call
  -- retried after its reply was lost (a dropped connection, a coordinator failover), and gets the
  -- tasks it was given, still held, instead of stranding them until their leases run out.
  local token = args[10] or ''
  local last_claim = 'claim:' .. worker
  if token ~= '' then
    local prev = redis.call('HGET', keys[K_META], last_claim)
    local sep = prev and string.find(prev, '|', 1, true)
    if sep and string.sub(prev, 1, sep - 1) == token then
      local again = {}
      for id in string.gmatch(string.sub(prev, sep + 1), '[^,]+') do
        local attempts, _, holder = inflight(keys, id)
        if holder == worker and redis.call('ZSCORE', keys[K_LEASES], id) then
          again[#again + 1] = task_reply(id, task_fields(keys, id), attempts)
        end
      end
      return claim_reply(keys, again)
    end
  end

  local out, count, bytes = {}, 0, 0
  local expired = redis.call('ZRANGEBYSCORE', keys[K_LEASES], '-inf', now, 'LIMIT', 0, max_tasks)
  for _, id in ipairs(expired) do
    local attempts, _, holder = inflight(keys, id)
    if attempts >= max_attempts then
      bury(keys, id, task_fields(keys, id), now, holder, attempts, 'gave up after ' .. attempts ..
        ' attempts: every worker that held it stopped renewing its lease (crashed, killed or stalled)')
    elseif count == 0 or bytes < max_bytes then
      local t = task_fields(keys, id)
      redis.call('HINCRBY', keys[K_META], 'redelivered', 1)
      out[#out + 1] = deliver(keys, id, t, now, lease_ms, attempts + 1, worker)
      count, bytes = count + 1, bytes + (tonumber(t['end']) - tonumber(t.start))
    end
  end

  local m = redis.call('HMGET', keys[K_META], 'tasks', 'delivered', 'delivered_id')
  local undelivered = tonumber(m[1]) - tonumber(m[2])
  if undelivered > 0 and count < max_tasks and (count == 0 or bytes < max_bytes) then
    local live = redis.call('ZCOUNT', keys[K_WORKERS], now - live_window, '+inf')
    local fair = math.ceil(undelivered / (2 * math.max(live, 1)))
    local want = math.min(max_tasks - count, fair)
    local take = 0
    for _, entry in ipairs(redis.call('XRANGE', keys[K_TASKS], '(' .. m[3], '+', 'COUNT', want)) do
      local t = entry_table(entry[2])
      local size = tonumber(t['end']) - tonumber(t.start)
      if count + take > 0 and bytes + size > max_bytes then
        break
      end
      take, bytes = take + 1, bytes + size
    end
    if take > 0 then
      local read = redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'COUNT', take, 'STREAMS', keys[K_TASKS], '>')
      local last = m[3]
      for _, entry in ipairs(read[1][2]) do
        out[#out + 1] = deliver(keys, entry[1], entry_table(entry[2]), now, lease_ms, 1, worker)
        last = entry[1]
      end
      redis.call('HINCRBY', keys[K_META], 'delivered', #read[1][2])
      redis.call('HSET', keys[K_META], 'delivered_id', last)
    end
  end

  if count == 0 and spec_factor > 0 then
    local id = straggling_task(keys, now, worker, max_attempts, spec_factor, spec_min)
    if id then
      local attempts = inflight(keys, id)
      local t = task_fields(keys, id)
      redis.call('HINCRBY', keys[K_META], 'speculated', 1)
      out[#out + 1] = deliver(keys, id, t, now, lease_ms, attempts + 1, worker)
    end
  end

  if token ~= '' then
    local ids = {}
    for i, task in ipairs(out) do
      ids[i] = task[1]
    end
    redis.call('HSET', keys[K_META], last_claim, token .. '|' .. table.concat(ids, ','))
  end
  return claim_reply(keys, out)
end

-- renew(now, worker, lease_ms, id...): extend the leases this worker still holds. Returns those ids.
local function renew(keys, args)
  local now, worker, lease_ms = int(args[1], 'now'), args[2], int(args[3], 'lease_ms')
  require_job(keys)
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  local held = {}
  for i = 4, #args do
    local _, _, holder = inflight(keys, args[i])
    if holder == worker and redis.call('ZSCORE', keys[K_LEASES], args[i]) then
      redis.call('ZADD', keys[K_LEASES], 'XX', now + lease_ms, args[i])
      held[#held + 1] = args[i]
    end
  end
  return held
end

-- commit(now, worker, n, {id, words} * n, {count, k, word * k}...): apply the merged counts of n tasks exactly
-- once. If any of the tasks is no longer pending (committed by another worker, or buried) nothing changes:
-- {'dup'} when all of them are, else {'partial', id...} naming those, so the worker recounts the rest.
local function commit(keys, args)
  local now, worker, n = int(args[1], 'now'), args[2], int(args[3], 'task count')
  if n < 1 or #args < 3 + 2 * n then
    fail('commit takes now, worker, n, n id/words pairs, then groups of count, k, k words')
  end
  local first_group = 4 + 2 * n
  local increments, words = 0, 0
  -- Words come grouped by count (most words of a commit share a handful of small counts), so each
  -- count is passed and checked once, not once per word.
  local i = first_group
  while i <= #args do
    local c, k = tonumber(args[i]), tonumber(args[i + 1])
    if c == nil or c <= 0 or c % 1 ~= 0 then
      fail('word counts must be positive integers, got ' .. tostring(args[i]))
    end
    if k == nil or k < 1 or k % 1 ~= 0 or i + 1 + k > #args then
      fail('a group of words with count ' .. args[i] .. ' has a bad length ' .. tostring(args[i + 1]))
    end
    words, increments, i = words + c * k, increments + k, i + 2 + k
  end
  require_job(keys)
  local gone, seen = {}, {}
  for i = 4, 3 + 2 * n, 2 do
    int(args[i + 1], 'words of task ' .. args[i])
    if seen[args[i]] then
      fail('task ' .. args[i] .. ' appears twice in one commit')
    end
    seen[args[i]] = true
    if not redis.call('ZSCORE', keys[K_LEASES], args[i]) then
      gone[#gone + 1] = args[i]
    end
  end
  if #gone == n then
    redis.call('HINCRBY', keys[K_META], 'duplicates', n)
    return { 'dup' }
  elseif #gone > 0 then
    local reply = { 'partial' }
    for _, id in ipairs(gone) do
      reply[#reply + 1] = id
    end
    return reply
  end

  -- Every task's fields are read before the first write: a missing one fails the call unchanged.
  local fields = {}
  for i = 4, 3 + 2 * n, 2 do
    fields[i] = task_fields(keys, args[i])
  end
  local done = meta_int(keys, 'done')
  local bytes, recomputed = 0, 0
  for i = 4, 3 + 2 * n, 2 do
    local id, t = args[i], fields[i]
    local attempts, claimed = retire(keys, id)
    done = done + 1
    redis.call('XADD', keys[K_DONE], done .. '-0', 'task', id, 'path', t.path, 'start', t.start, 'end', t['end'],
      'injected_ms', t.injected_ms, 'claimed_ms', claimed, 'committed_ms', now, 'worker', worker,
      'attempts', attempts, 'words', args[i + 1])
    bytes = bytes + (tonumber(t['end']) - tonumber(t.start))
    if attempts > 1 then
      recomputed = recomputed + 1
    end
  end
  local call, counts = redis.call, keys[K_COUNTS]
  i = first_group
  while i <= #args do
    local c, last = args[i], i + 1 + tonumber(args[i + 1])
    for j = i + 2, last do
      call('ZINCRBY', counts, c, args[j])
    end
    i = last + 1
  end
  local meta = keys[K_META]
  redis.call('HSET', meta, 'done', done)
  redis.call('HINCRBY', meta, 'done_bytes', bytes)
  redis.call('HINCRBY', meta, 'words', words)
  redis.call('HINCRBY', meta, 'increments', increments)
  redis.call('HINCRBY', meta, 'recomputed', recomputed)
  redis.call('HINCRBY', meta, 'commits', 1)
  return { 'ok', n }
end

-- fail(now, worker, id, error): the task's input cannot be processed (missing, unreadable, malformed):
-- move it to the dead stream with the error. {'dup'} if it is no longer pending.
local function fail_task(keys, args)
  local now, worker, id, message = int(args[1], 'now'), args[2], args[3], args[4]
  if id == nil or message == nil then
    fail('fail takes now, worker, task id and an error message')
  end
  require_job(keys)
  if not redis.call('ZSCORE', keys[K_LEASES], id) then
    return { 'dup' }
  end
  local attempts = inflight(keys, id)
  bury(keys, id, task_fields(keys, id), now, worker, attempts, message)
  return { 'ok' }
end

-- event(now, kind, detail): note a fault or operator event (worker killed, straggler ...) in the job, so
-- latency plots can mark it later. Returns the event's number.
local function event(keys, args)
  local now, kind, detail = int(args[1], 'now'), args[2], args[3] or ''
  if kind == nil or kind == '' then
    fail('event needs a kind')
  end
  require_job(keys)
  local n = redis.call('HINCRBY', keys[K_META], 'events', 1)
  redis.call('XADD', keys[K_EVENTS], n .. '-0', 'at_ms', now, 'kind', kind, 'detail', detail)
  return n
end

local STATUS_FIELDS = { 'state', 'tasks', 'bytes', 'delivered', 'done', 'done_bytes', 'dead', 'words',
  'recomputed', 'redelivered', 'duplicates', 'increments', 'commits', 'created_ms', 'sealed_ms', 'run_id',
  'speculated', 'events' }

-- status(now, live_window_ms): read-only counters as field/value pairs in a fixed order.
local function status(keys, args)
  local now, live_window = int(args[1], 'now'), int(args[2], 'live_window_ms')
  require_job(keys)
  local values = redis.call('HMGET', keys[K_META], unpack(STATUS_FIELDS))
  local reply = {}
  for i, field in ipairs(STATUS_FIELDS) do
    reply[#reply + 1] = field
    reply[#reply + 1] = values[i] or ''
  end
  local extra = {
    'in_flight', redis.call('ZCARD', keys[K_LEASES]),
    'live_workers', redis.call('ZCOUNT', keys[K_WORKERS], now - live_window, '+inf'),
    'distinct_words', redis.call('ZCARD', keys[K_COUNTS]),
    'finished', is_finished(keys) and 1 or 0,
  }
  for _, v in ipairs(extra) do
    reply[#reply + 1] = v
  end
  return reply
end

local function version()
  return LIBRARY_VERSION
end

redis.register_function('rc_create', create)
redis.register_function('rc_enqueue', enqueue)
redis.register_function('rc_seal', seal)
redis.register_function('rc_claim', claim)
redis.register_function('rc_renew', renew)
redis.register_function('rc_commit', commit)
redis.register_function('rc_fail', fail_task)
redis.register_function('rc_event', event)
redis.register_function { function_name = 'rc_status', callback = status, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_version', callback = version, flags = { 'no-writes' } }
