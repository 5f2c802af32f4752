#!lua name=redcount
-- redcount's coordination protocol: every state change of a job is one call of a function below,
-- so each change is atomic on a single Redis, after a restore from a checkpoint, on replicas, and on a
-- Raft state machine that re-executes every call. docs/PROTOCOL.md describes every function. Rules:
--   * one clock, the coordinator's: `now` (ARGV[1] of every function) is `*`, this Redis's TIME, or a
--     pinned number of ms, which a Raft leader stamps on every entry (see `clock`); no TTLs, no
--     XAUTOCLAIM, no XPENDING IDLE; leases run on the lease clock (see `lease_clock`);
--   * no randomness and no replies that depend on hash iteration order;
--   * explicit stream ids everywhere (tasks `seq-0`, done `n-0`, dead `n-0`);
--   * validate every argument before the first write (Redis has no rollback).
-- KEYS are always the nine keys of one job, in the order of `JobKeys::all` in keys.rs.

local LIBRARY_VERSION = 36

local K_TASKS, K_LEASES, K_COUNTS, K_META, K_DONE, K_DEAD, K_INFLIGHT, K_WORKERS, K_EVENTS = 1, 2, 3, 4, 5, 6, 7, 8, 9
local GROUP = 'workers'

-- Errors echo the offending argument: escaped to printable ASCII (a raw byte that is not UTF-8 in an
-- error line breaks clients' parsers) and cut to 300 bytes.
local function fail(message)
  message = string.gsub(message, '[^\32-\126]', function(c)
    return string.format('\\x%02x', string.byte(c))
  end)
  if #message > 300 then
    message = string.sub(message, 1, 300) .. '...'
  end
  error({ err = 'ERR redcount: ' .. message })
end

-- An integer argument: an optional '-' and 1 to 15 digits, nothing else. Lua's tonumber also takes
-- ' 5', '2.0', '1e5' and 0x10, which Redis may then refuse half-way through a call (a stream id
-- '2.0-0', a ZINCRBY by ' 5') after earlier writes, and numbers past 15 digits stop being exact.
local function int(value, what)
  local digits = type(value) == 'string' and string.match(value, '^%-?(%d+)$')
  if not digits or #digits > 15 then
    fail(what .. ' must be an integer of at most 15 digits, got ' .. tostring(value))
  end
  return tonumber(value)
end

-- The coordinator's clock, in ms. `now` is `*`: this Redis's own TIME (plain Redis and Sentinel: the
-- effects of a call are what replicas and the AOF receive, so they agree with it); or pinned
-- milliseconds: a Raft leader stamps every entry with its clock, so every node re-executes the entry
-- identically, and tests pin time. Workers send `*`: their own clocks never matter.
local MAX_NOW = 10000000000000 -- 1e13 ms, the year 2286: beyond it numbers lose their integer form
local function clock(value)
  if value == '*' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local n = int(value, 'now')
  if n < 0 or n >= MAX_NOW then
    fail('now must be * or milliseconds since the epoch below 1e13, got ' .. tostring(value))
  end
  return n
end

local function require_job(keys)
  if redis.call('EXISTS', keys[K_META]) == 0 then
    error({ err = 'NOJOB redcount: no job at ' .. keys[K_META] .. ' (never created, or Redis lost its data)' })
  end
end

-- Keys beyond the nine share the job's prefix and hash tag, `rc:{J}:` .. suffix (keys.rs builds the
-- same names): `parts:<p>` (sorted set: partial seq -> committed_ms), `part:<p>:<seq>` (one partial
-- blob), `result:<p>` (the merged blob), `top:<p>` (its top-K blob), `merge` (hash: `lease:<p>` ->
-- `deadline:worker`, `gen:<p>`, `distinct:<p>`, `words:<p>`), `stage:<worker>:<token>:<p>` (a blob
-- being staged), `staged` (their names), `failed` (packed files recorded dead), `lacks:<id>`,
-- `end` (a stream of one entry, written when the job ends: see note_end).
local function job_key(keys, suffix)
  return string.sub(keys[K_META], 1, -5) .. suffix
end

-- The job's name, `J` of `rc:{J}:meta` (for messages a user reads).
local function job_name(keys)
  return string.sub(keys[K_META], 5, -7)
end

-- The keys beyond the nine that hold the job's own state (not per partition, task or worker): made
-- by the job's calls, refused as leftovers when a job is made, removed with the job.
local AUX_SUFFIXES = { 'merge', 'staged', 'failed', 'splits', 'end' }

-- A job's end (finished, cancelled or failed) is announced once, as the one entry `1-0` of its
-- `end` stream, when `finished_ms` is first set. Every blocking read of a worker or a driver reads
-- that stream from `0-0` beside what it waits for, so it wakes the moment the job ends (and at
-- once when it already has) instead of finding out at its next poll.
local function note_end(keys, now)
  if redis.call('HSETNX', keys[K_META], 'finished_ms', now) == 1 then
    local stream = job_key(keys, 'end')
    if redis.call('EXISTS', stream) == 0 then
      redis.call('XADD', stream, '1-0', 'at', now)
    end
  end
end

-- A job ends without a result when it is cancelled (`stop`, by an operator or a stopped stream) or
-- when it failed: a key it needs vanished (evicted under memory pressure, deleted by another
-- client), so no exact result can come out of it. Its state says which, `stop_reason` why.
local STOPPED = { cancelled = true, failed = true }

local function is_stopped(keys)
  return STOPPED[redis.call('HGET', keys[K_META], 'state') or ''] == true
end

-- Ends the job as `kind` (cancelled or failed) with `reason`, unless it already ended: the first
-- reason stays. Workers see it as finished and leave; the driver reports the reason.
local function stop_job(keys, now, kind, reason)
  if is_stopped(keys) then
    return false
  end
  redis.call('HSET', keys[K_META], 'state', kind, 'stop_reason', reason)
  note_end(keys, now)
  return true
end

-- A key the job needs is gone although the job never removes it while it runs: Redis evicted it
-- (a maxmemory-policy other than noeviction) or another client deleted it. Counting on would give
-- a wrong result, so the job fails, naming the key, and the call answers STOPPED.
local function lost(keys, now, what)
  local reason = what .. ': Redis evicted it (maxmemory-policy is not noeviction?) or another client ' ..
    'deleted it; the counts cannot be exact, run the job again'
  stop_job(keys, now, 'failed', reason)
  error({ err = 'STOPPED redcount: job failed: ' .. reason })
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

-- A task split off another (`split`) has an id with a dot (`12-0.2.1`) and its fields in the hash
-- `splits`; every other task is an entry of the task stream.
local function is_split(id)
  return string.find(id, '.', 1, true) ~= nil
end

local SPLIT_FIELDS = { 'path', 'start', 'end', 'fmt', 'ver', 'more', 'injected_ms', 'due_ms' }

-- A split task's fields, each as `<length>:<bytes>` (paths and `more` may hold any byte).
local function encode_split(t)
  local out = {}
  for _, name in ipairs(SPLIT_FIELDS) do
    local v = t[name] or ''
    out[#out + 1] = #v .. ':' .. v
  end
  return table.concat(out)
end

local function decode_split(s)
  local t, at = {}, 1
  for _, name in ipairs(SPLIT_FIELDS) do
    local colon = string.find(s, ':', at, true)
    local len = tonumber(string.sub(s, at, colon - 1))
    t[name] = string.sub(s, colon + 1, colon + len)
    at = colon + len + 1
  end
  if t.ver == '' then t.ver = nil end
  if t.more == '' then t.more = nil end
  if t.due_ms == '' then t.due_ms = nil end
  return t
end

-- A task's fields as a table, read from its stream entry (or, split off another, from `splits`).
-- Only tasks the job holds are asked for (leased, in flight, or being committed), so a missing one
-- was lost (see `lost`).
local function task_fields(keys, id, now)
  if is_split(id) then
    local v = redis.call('HGET', job_key(keys, 'splits'), id)
    if not v then
      lost(keys, now, 'task ' .. id .. ' vanished from ' .. job_key(keys, 'splits'))
    end
    return decode_split(v)
  end
  local found = redis.call('XRANGE', keys[K_TASKS], id, id)
  if #found == 0 then
    lost(keys, now, 'task ' .. id .. ' vanished from ' .. keys[K_TASKS])
  end
  return entry_table(found[1][2])
end

-- The files (ranges) of a task: its own, then those packed with it (`more`: `<bytes>|` then path,
-- start, end, fmt, ver, each followed by a NUL byte), each {path, start, end, fmt, ver}.
local function task_pieces(t)
  local pieces = { { path = t.path, start = t.start, ['end'] = t['end'], fmt = t.fmt, ver = t.ver or '' } }
  local more = t.more or ''
  local bar = string.find(more, '|', 1, true)
  if bar then
    local f = {}
    for field in string.gmatch(string.sub(more, bar + 1), '([^%z]*)%z') do
      f[#f + 1] = field
    end
    for i = 1, #f - 4, 5 do
      pieces[#pieces + 1] = { path = f[i], start = f[i + 1], ['end'] = f[i + 2], fmt = f[i + 3], ver = f[i + 4] }
    end
  end
  return pieces
end

-- A task's fields made of pieces[from..to] (and `injected_ms`, `due_ms` of `t`).
local function task_of_pieces(t, pieces, from, to)
  local first = pieces[from]
  local child = { path = first.path, start = first.start, ['end'] = first['end'], fmt = first.fmt,
    ver = first.ver, injected_ms = t.injected_ms, due_ms = t.due_ms }
  if to > from then
    local bytes, parts = 0, {}
    for i = from + 1, to do
      local p = pieces[i]
      bytes = bytes + tonumber(p['end']) - tonumber(p.start)
      parts[#parts + 1] = p.path .. '\0' .. p.start .. '\0' .. p['end'] .. '\0' .. p.fmt .. '\0' .. p.ver .. '\0'
    end
    child.more = bytes .. '|' .. table.concat(parts)
  end
  return child
end

-- The task stream (with its consumer group) exists as long as the job does.
local function require_tasks(keys, now)
  if redis.call('EXISTS', keys[K_TASKS]) == 0 then
    lost(keys, now, keys[K_TASKS] .. ' vanished')
  end
end

-- The lease clock: the coordinator's clock with every quiet stretch taken out. When no call of the job
-- was served for longer than a third of its lease (a failover, a Redis restart, a long busy script:
-- workers could not renew), the stretch beyond that third pauses every lease, as Chubby's new master
-- extends its sessions: leases run down only while the coordinator serves, so a failover alone never
-- takes a task from a live worker, while a worker that really died still loses its tasks one lease
-- later. Workers renew every quarter of a lease and poll at least as often when idle, so a job with a
-- live worker is never quiet that long. Deterministic: it derives from `now` and the job's state only.
local function lease_clock(keys, now)
  local m = redis.call('HMGET', keys[K_META], 'heard_ms', 'paused_ms', 'cfg.lease_ms')
  local heard, paused = tonumber(m[1] or now), tonumber(m[2] or '0')
  local quiet = math.max(math.floor(tonumber(m[3] or '0') / 3), 1)
  if now - heard > quiet then
    paused = paused + now - heard - quiet
    redis.call('HSET', keys[K_META], 'paused_ms', paused)
  end
  if now > heard then
    redis.call('HSET', keys[K_META], 'heard_ms', now)
  end
  return now - paused
end

-- inflight hash value of a delivered task: "attempts:charged:solo:claimed_ms:lease_claimed:holder".
-- attempts counts deliveries; charged, the deliveries that ended with the holder gone while the task
-- was handed out alone (solo 1), so it was the one being counted. claimed_ms is the coordinator's
-- clock, lease_claimed the lease clock. An expired lease is released: holder ''.
local function inflight(keys, id)
  local v = redis.call('HGET', keys[K_INFLIGHT], id)
  if not v then
    return { attempts = 0, charged = 0, solo = 0, claimed = 0, lclaimed = 0, holder = '' }
  end
  local attempts, charged, solo, claimed, lclaimed, holder = string.match(v, '^(%d+):(%d+):(%d):(%d+):(%d+):(.*)$')
  return { attempts = tonumber(attempts), charged = tonumber(charged), solo = tonumber(solo),
    claimed = tonumber(claimed), lclaimed = tonumber(lclaimed), holder = holder }
end

-- The inflight record of task `id` when `worker` still holds it (leased to it, not released), else
-- nil: the task was committed, given up or handed to another worker meanwhile.
local function held_by(keys, id, worker)
  local f = inflight(keys, id)
  if f.holder ~= worker or not redis.call('ZSCORE', keys[K_LEASES], id) then
    return nil
  end
  return f
end

local function set_inflight(keys, id, f)
  redis.call('HSET', keys[K_INFLIGHT], id,
    f.attempts .. ':' .. f.charged .. ':' .. f.solo .. ':' .. f.claimed .. ':' .. f.lclaimed .. ':' .. f.holder)
end

-- The holder a task had before its last re-delivery or speculative copy, under `<id><` in inflight
-- ("attempts:claimed_ms:holder"): a late commit by that holder then records its own claim, not
-- the new holder's (which would make its work look shorter than it was and mislead speculation).
local function remember_holder(keys, id, f)
  if f.holder ~= '' then
    redis.call('HSET', keys[K_INFLIGHT], id .. '<', f.attempts .. ':' .. f.claimed .. ':' .. f.holder)
  end
end

-- The workers that could not open task `id`'s input (`defer`): a set under the job's prefix.
local function lacks_key(keys, id)
  return string.sub(keys[K_META], 1, -5) .. 'lacks:' .. id
end

-- Whether `worker` said it cannot open task `id` while some other live worker has not: then
-- the task is for them.
local function others_may_have(keys, id, worker, live)
  local lacks = lacks_key(keys, id)
  return redis.call('SISMEMBER', lacks, worker) == 1 and redis.call('SCARD', lacks) < live
end

-- Forget a delivered task: ack it, delete its entry (nothing reads a retired task again, and a stream
-- that runs for days must not keep every file it was given), drop its lease and the record of who
-- could not open it. Returns what inflight knew of it, and of its previous holder (or nil).
local function retire(keys, id)
  local f = inflight(keys, id)
  local prev = redis.call('HGET', keys[K_INFLIGHT], id .. '<')
  if prev then
    local attempts, claimed, holder = string.match(prev, '^(%d+):(%d+):(.*)$')
    prev = { attempts = tonumber(attempts), claimed = tonumber(claimed), holder = holder }
  end
  if is_split(id) then
    redis.call('HDEL', job_key(keys, 'splits'), id)
  else
    redis.call('XACK', keys[K_TASKS], GROUP, id)
    redis.call('XDEL', keys[K_TASKS], id)
  end
  redis.call('ZREM', keys[K_LEASES], id)
  redis.call('HDEL', keys[K_INFLIGHT], id, id .. '<', id .. '!')
  redis.call('DEL', lacks_key(keys, id))
  return f, prev
end

-- Give up on a delivered task `t` (its fields, read before any write): ack it, drop its lease, record it.
-- Every file (or range) of it gets a `dead` record of its own: each input not counted is named.
local function bury(keys, id, t, now, worker, attempts, message)
  retire(keys, id)
  redis.call('HINCRBY', keys[K_META], 'dead', 1)
  for _, p in ipairs(task_pieces(t)) do
    local n = redis.call('HINCRBY', keys[K_META], 'dead_records', 1)
    redis.call('XADD', keys[K_DEAD], n .. '-0', 'task', id, 'path', p.path, 'start', p.start, 'end', p['end'],
      'failed_ms', now, 'worker', worker, 'attempts', attempts, 'error', message)
  end
end

local function task_reply(id, t, f)
  return { id, t.path, t.start, t['end'], t.fmt, t.injected_ms, f.attempts, t.more or '', f.solo, t.ver or '',
    f.charged }
end

-- Bytes of a task: its own range, plus those of the small files packed with it (`more` starts with
-- their total, `<bytes>|...`).
local function task_bytes(t)
  local more = tonumber(string.match(t.more or '', '^(%d+)|') or '0')
  return tonumber(t['end']) - tonumber(t.start) + more
end

-- Hand task `id` (fields `t`, inflight record `f`) to `worker` as its next delivery, alone when `solo`
-- is 1: the pending entry moves to the worker at `now` (pinned, so every replica records the same
-- entry), the task gets a lease on the lease clock `lnow`, and the reply entry is returned.
local function deliver(keys, id, t, now, lnow, lease_ms, f, worker, solo)
  if not is_split(id) then
    redis.call('XCLAIM', keys[K_TASKS], GROUP, worker, 0, id, 'TIME', now, 'JUSTID')
  end
  remember_holder(keys, id, f)
  f.attempts, f.solo, f.claimed, f.lclaimed, f.holder = f.attempts + 1, solo, now, lnow, worker
  redis.call('ZADD', keys[K_LEASES], lnow + lease_ms, id)
  set_inflight(keys, id, f)
  return task_reply(id, t, f)
end

local function is_finished(keys)
  local m = redis.call('HMGET', keys[K_META], 'state', 'tasks', 'delivered', 'done', 'dead')
  if STOPPED[m[1] or ''] then
    return true
  end
  local tasks = tonumber(m[2] or '0')
  -- A split turns one task into two: its parts are settled one by one.
  local settled = tasks + meta_int(keys, 'splits')
  return m[1] == 'sealed' and tonumber(m[3] or '0') == tasks and redis.call('ZCARD', keys[K_LEASES]) == 0
    and tonumber(m[4] or '0') + tonumber(m[5] or '0') == settled
    and tonumber(redis.call('HGET', keys[K_META], 'partials') or '0') == 0
end

-- Notes when the job became finished (`finished_ms`, once), after a call that may have finished it.
-- Returns whether it is finished (claim's reply says so too, without asking again).
local function note_finished(keys, now)
  local finished = is_finished(keys)
  if finished then
    note_end(keys, now)
  end
  return finished
end

-- create(now, run_id, field, value, ...): make the job (idempotent). Returns {created 0/1, run_id}.
local function create(keys, args)
  local now = clock(args[1])
  local run_id = args[2]
  if run_id == nil or (#args - 2) % 2 ~= 0 then
    fail('create takes now, run_id and field/value pairs')
  end
  if redis.call('EXISTS', keys[K_META]) == 1 then
    return { 0, redis.call('HGET', keys[K_META], 'run_id') }
  end
  -- The meta hash goes last when a job is dropped and first when it is made, so other keys of the
  -- job without it were left by an eviction or another client's DEL: a job made over them would
  -- count their stale partials and records as its own.
  local left = 0
  for i, key in ipairs(keys) do
    if i ~= K_META then
      left = left + redis.call('EXISTS', key)
    end
  end
  for _, suffix in ipairs(AUX_SUFFIXES) do
    left = left + redis.call('EXISTS', job_key(keys, suffix))
  end
  for _, suffix in ipairs({ 'parts:0', 'result:0' }) do
    left = left + redis.call('EXISTS', job_key(keys, suffix))
  end
  if left > 0 then
    return { 'leftovers', left }
  end
  redis.call('XGROUP', 'CREATE', keys[K_TASKS], GROUP, '0', 'MKSTREAM')
  redis.call('HSET', keys[K_META], 'state', 'open', 'run_id', run_id, 'created_ms', now, 'tasks', 0, 'bytes', 0,
    'last_seq', 0, 'delivered', 0, 'delivered_id', '0-0', 'done', 0, 'done_bytes', 0, 'dead', 0, 'words', 0,
    'recomputed', 0, 'redelivered', 0, 'duplicates', 0, 'increments', 0, 'commits', 0, 'speculated', 0, 'events', 0,
    'partials', 0, 'partial_seq', 0, 'merges', 0, 'distinct', 0, 'dead_records', 0, 'heard_ms', now, 'paused_ms', 0)
  for i = 3, #args, 2 do
    redis.call('HSET', keys[K_META], args[i], args[i + 1])
  end
  return { 1, run_id }
end

-- enqueue(now, {seq, path, start, end, fmt, more, due, ver}...): add tasks with ids `seq-0`; `more` is empty,
-- or the other ranges of a task that packs small files (`<their bytes>|` then path, start, end, fmt,
-- ver, each followed by a NUL byte); `ver` is empty for a local file, or the version planned (an
-- object's ETag, which every read of it asks for); `due` is empty, or when the file was due to arrive (a stream's
-- schedule, ms on the coordinator's clock): latency counts from then, so a file that waited out an
-- outage before it could be enqueued shows its whole wait. A task whose seq is not above the job's last one is already there (a re-send
-- after a crash or rollback) and is skipped. The job's tasks are always exactly 1..last_seq: new ones
-- must continue that run, so when a rollback lost the tail the reply is {'gap', last_seq} (nothing
-- added) and the driver re-sends from last_seq + 1. Else {'ok', added, skipped}.
local function enqueue(keys, args)
  local now = clock(args[1])
  if (#args - 1) % 8 ~= 0 then
    fail('enqueue takes now and groups of seq, path, start, end, fmt, more, due, ver')
  end
  require_job(keys)
  local last_seq = meta_int(keys, 'last_seq')
  local prev, fresh = -1, {}
  for i = 2, #args, 8 do
    local seq = int(args[i], 'seq')
    local s, e = int(args[i + 2], 'start'), int(args[i + 3], 'end')
    if seq <= prev then
      fail('task sequence numbers must increase within one enqueue, got ' .. seq .. ' after ' .. prev)
    end
    if s < 0 or e < s then
      fail('bad byte range ' .. s .. '..' .. e .. ' for ' .. args[i + 1])
    end
    if args[i + 5] ~= '' and not string.match(args[i + 5], '^%d+|') then
      fail('the packed ranges of task ' .. seq .. ' do not start with their byte count')
    end
    if args[i + 6] ~= '' then
      int(args[i + 6], 'due')
    end
    if seq > last_seq then
      if #fresh == 0 and seq ~= last_seq + 1 then
        return { 'gap', last_seq }
      elseif #fresh > 0 and seq ~= prev + 1 then
        fail('task sequence numbers must have no holes, got ' .. seq .. ' after ' .. prev)
      end
      fresh[#fresh + 1] = i
    end
    prev = seq
  end
  if #fresh > 0 and redis.call('HGET', keys[K_META], 'state') ~= 'open' then
    fail('job is sealed: no new tasks can be added to ' .. keys[K_TASKS])
  end
  lease_clock(keys, now)
  local bytes = 0
  for _, i in ipairs(fresh) do
    local t = { path = args[i + 1], start = args[i + 2], ['end'] = args[i + 3], fmt = args[i + 4] }
    local fields = { 'path', t.path, 'start', t.start, 'end', t['end'], 'fmt', t.fmt, 'injected_ms', now }
    if args[i + 5] ~= '' then
      t.more = args[i + 5]
      fields[#fields + 1], fields[#fields + 2] = 'more', t.more
    end
    if args[i + 6] ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'due_ms', args[i + 6]
    end
    if args[i + 7] ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'ver', args[i + 7]
    end
    redis.call('XADD', keys[K_TASKS], args[i] .. '-0', unpack(fields))
    bytes = bytes + task_bytes(t)
  end
  if #fresh > 0 then
    redis.call('HINCRBY', keys[K_META], 'tasks', #fresh)
    redis.call('HINCRBY', keys[K_META], 'bytes', bytes)
    redis.call('HSET', keys[K_META], 'last_seq', prev)
  end
  return { 'ok', #fresh, (#args - 1) / 8 - #fresh }
end

-- seal(now, expected_tasks, field, value, ...): no more tasks will come. expected_tasks > 0 must match
-- the job's task count (else the reply says how many are there, so the driver can re-send what a
-- rollback lost). The field/value pairs (a batch job's `plan.*`, known once its inputs are all
-- listed) are written with the seal, in the same call.
local function seal(keys, args)
  local now = clock(args[1])
  local expected = int(args[2] or '0', 'expected_tasks')
  if (#args - 2) % 2 ~= 0 then
    fail('seal takes now, expected_tasks and field/value pairs')
  end
  for i = 3, #args, 2 do
    if string.sub(args[i], 1, 5) ~= 'plan.' then
      fail('seal writes plan.* fields only, got ' .. args[i])
    end
  end
  require_job(keys)
  local tasks = meta_int(keys, 'tasks')
  if expected > 0 and tasks ~= expected then
    return { 0, tasks }
  end
  if redis.call('HGET', keys[K_META], 'state') == 'open' then
    redis.call('HSET', keys[K_META], 'state', 'sealed', 'sealed_ms', now)
  end
  for i = 3, #args, 2 do
    redis.call('HSET', keys[K_META], args[i], args[i + 1])
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
-- p90 of recent task durations (and at least min_ms) on the lease clock (a failover does not make a
-- task look slow). Oldest claim first, ties by id, so the choice does not depend on the hash's
-- iteration order. Only a worker that has recently committed (3 of the last 100 commits) at no more
-- than twice the median duration speculates: a straggler takes nothing from others. Only first
-- attempts are copied, so a task never ping-pongs between workers.
local function straggling_task(keys, lnow, worker, factor, min_ms)
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
    local attempts, lclaimed, holder = string.match(flat[i + 1], '^(%d+):%d+:%d:%d+:(%d+):(.*)$')
    attempts, lclaimed = tonumber(attempts), tonumber(lclaimed)
    -- (A previous holder's entry, `<id><`, and a blamed worker's, `<id>!`, are skipped.)
    local last = string.sub(flat[i], -1)
    if attempts and last ~= '<' and last ~= '!' and attempts == 1 and holder ~= worker and holder ~= '' and lnow - lclaimed > threshold then
      if best == nil or lclaimed < best_claimed or (lclaimed == best_claimed and flat[i] < best) then
        best, best_claimed = flat[i], lclaimed
      end
    end
  end
  return best
end

-- Claim's reply: finished?, ms until the earliest lease expires (-1: none), newest task and done ids,
-- then the tasks. The wait is relative: a worker's clock never has to agree with the coordinator's.
local function claim_reply(keys, lnow, tasks, finished)
  local first = redis.call('ZRANGE', keys[K_LEASES], 0, 0, 'WITHSCORES')
  local next_expiry = -1
  if #first > 0 then
    next_expiry = math.max(tonumber(first[2]) - lnow, 0)
  end
  local reply = { finished and 1 or 0, next_expiry, meta_int(keys, 'last_seq') .. '-0',
    meta_int(keys, 'done') .. '-0' }
  for _, task in ipairs(tasks) do
    reply[#reply + 1] = task
  end
  return reply
end

-- Releases the expired leases among the first `limit` (lease clock `lnow`): a task whose holder stopped
-- renewing it while it held it alone is charged for that (it was the one being counted), and buried
-- once charged max_attempts times; the others (the rest of a dead worker's batch) are charged
-- nothing. Every released task waits, holder '', at the head of the leases, to be handed out alone.
-- Returns the ids released, in lease order.
local function release_expired(keys, now, lnow, limit, max_attempts, lease_ms)
  local released = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', keys[K_LEASES], '-inf', lnow, 'LIMIT', 0, limit)) do
    local f = inflight(keys, id)
    if f.holder ~= '' then
      local holder = f.holder
      remember_holder(keys, id, f)
      -- A holder heard from within half a lease is alive (a live worker calls every quarter of
      -- one): its lease ran out for another reason, and it is not charged. One that fell silent
      -- while counting this task alone is.
      local heard = tonumber(redis.call('ZSCORE', keys[K_WORKERS], holder) or '0')
      local silent = now - heard > lease_ms / 2
      if f.solo == 1 and silent then
        f.charged = f.charged + 1
        redis.call('HSET', keys[K_INFLIGHT], id .. '!', holder)
      end
      f.holder = ''
      if f.charged >= max_attempts then
        bury(keys, id, task_fields(keys, id, now), now, holder, f.attempts, 'gave up after ' .. f.charged ..
          ' attempts: each time, the worker counting it alone (the last: ' .. holder .. ') fell silent ' ..
          'holding it (it crashed, was killed or hung on this input)')
      else
        set_inflight(keys, id, f)
        redis.call('ZADD', keys[K_LEASES], 0, id)
        released[#released + 1] = id
      end
    else
      released[#released + 1] = id
    end
  end
  return released
end

-- claim(now, worker, lease_ms, max_tasks, max_bytes, max_attempts, live_window_ms, spec_factor, spec_min_ms,
--       token)
-- Releases expired leases first (see release_expired). A released task is handed out alone: the reply
-- holds it and nothing else, so an input that crashes its workers is isolated and charged, and no other
-- task pays for it. Else new tasks: at most max_tasks, at most max_bytes (but always one), and at most a
-- fair share of what is left undelivered, so the tail of a job is spread over the live workers. With
-- nothing else to hand out and spec_factor > 0, one straggler's task is handed out speculatively (the
-- first commit wins, the other is a duplicate; the copy is charged nothing). A token seen in this
-- worker's previous claim marks a retry: it gets that claim's tasks again. Reply:
-- {finished, ms until the next lease expires or -1, last task id, last done id, {task}...}
local function claim(keys, args)
  local now, worker = clock(args[1]), args[2]
  local lease_ms, max_tasks = int(args[3], 'lease_ms'), int(args[4], 'max_tasks')
  local max_bytes, max_attempts = int(args[5], 'max_bytes'), int(args[6], 'max_attempts')
  local live_window = int(args[7], 'live_window_ms')
  local spec_factor, spec_min = tonumber(args[8] or '0'), int(args[9] or '0', 'spec_min_ms')
  if spec_factor == nil or spec_factor ~= spec_factor or spec_factor < 0 or spec_factor == math.huge then
    fail('spec_factor must be a number >= 0, got ' .. tostring(args[8]))
  end
  if worker == nil or worker == '' or lease_ms <= 0 or max_tasks <= 0 or max_attempts <= 0 then
    fail('claim needs a worker name and positive lease_ms, max_tasks, max_attempts')
  end
  require_job(keys)
  if is_stopped(keys) then
    return { 1, -1, meta_int(keys, 'last_seq') .. '-0', meta_int(keys, 'done') .. '-0' }
  end
  require_tasks(keys, now)
  local lnow = lease_clock(keys, now)

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
        local f = inflight(keys, id)
        if f.holder == worker and redis.call('ZSCORE', keys[K_LEASES], id) then
          again[#again + 1] = task_reply(id, task_fields(keys, id, now), f)
        end
      end
      redis.call('ZADD', keys[K_WORKERS], now, worker)
      return claim_reply(keys, lnow, again, note_finished(keys, now))
    end
  end

  -- Expired leases are released before this worker is noted live, so that a worker restarted
  -- under the name of one that died does not make its earlier life look alive.
  local released = release_expired(keys, now, lnow, max_tasks, max_attempts, lease_ms)
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  local out = {}
  local live = redis.call('ZCOUNT', keys[K_WORKERS], now - live_window, '+inf')
  for _, id in ipairs(released) do
    if not others_may_have(keys, id, worker, live) then
      redis.call('HINCRBY', keys[K_META], 'redelivered', 1)
      out[1] = deliver(keys, id, task_fields(keys, id, now), now, lnow, lease_ms, inflight(keys, id), worker, 1)
      break
    end
  end

  local m = redis.call('HMGET', keys[K_META], 'tasks', 'delivered', 'delivered_id')
  local undelivered = tonumber(m[1]) - tonumber(m[2])
  if #out == 0 and undelivered > 0 then
    local fair = math.ceil(undelivered / (2 * math.max(live, 1)))
    local want = math.min(max_tasks, fair)
    local take, bytes = 0, 0
    for _, entry in ipairs(redis.call('XRANGE', keys[K_TASKS], '(' .. m[3], '+', 'COUNT', want)) do
      local size = task_bytes(entry_table(entry[2]))
      if take > 0 and bytes + size > max_bytes then
        break
      end
      take, bytes = take + 1, bytes + size
    end
    if take > 0 then
      local read = redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'COUNT', take, 'STREAMS', keys[K_TASKS], '>')
      local last = m[3]
      for _, entry in ipairs(read[1][2]) do
        out[#out + 1] = deliver(keys, entry[1], entry_table(entry[2]), now, lnow, lease_ms, inflight(keys, entry[1]),
          worker, 0)
        last = entry[1]
      end
      redis.call('HINCRBY', keys[K_META], 'delivered', #read[1][2])
      redis.call('HSET', keys[K_META], 'delivered_id', last)
    end
  end

  if #out == 0 and spec_factor > 0 then
    local id = straggling_task(keys, lnow, worker, spec_factor, spec_min)
    if id then
      redis.call('HINCRBY', keys[K_META], 'speculated', 1)
      out[1] = deliver(keys, id, task_fields(keys, id, now), now, lnow, lease_ms, inflight(keys, id), worker, 0)
    end
  end

  if token ~= '' then
    local ids = {}
    for i, task in ipairs(out) do
      ids[i] = task[1]
    end
    redis.call('HSET', keys[K_META], last_claim, token .. '|' .. table.concat(ids, ','))
  end
  return claim_reply(keys, lnow, out, note_finished(keys, now))
end

-- renew(now, worker, lease_ms, id...): extend the leases this worker still holds. Returns those ids.
local function renew(keys, args)
  local now, worker, lease_ms = clock(args[1]), args[2], int(args[3], 'lease_ms')
  if worker == nil or worker == '' or lease_ms <= 0 then
    fail('renew needs a worker name and a positive lease_ms')
  end
  require_job(keys)
  local lnow = lease_clock(keys, now)
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  local held = {}
  for i = 4, #args do
    local f = inflight(keys, args[i])
    if f.holder == worker and redis.call('ZSCORE', keys[K_LEASES], args[i]) then
      redis.call('ZADD', keys[K_LEASES], 'XX', lnow + lease_ms, args[i])
      held[#held + 1] = args[i]
    elseif redis.call('HGET', keys[K_INFLIGHT], args[i] .. '!') == worker then
      -- Charged for falling silent while it held this task, and yet alive: not a death after all.
      f.charged = math.max(f.charged - 1, 0)
      set_inflight(keys, args[i], f)
      redis.call('HDEL', keys[K_INFLIGHT], args[i] .. '!')
    end
  end
  return held
end

-- The n (id, words) pairs of a commit, from args[4]: validated, then checked against the leases.
-- Returns nil when every task is still leased, else the reply: {'dup'} when all of them are gone
-- (committed by another worker, or buried), else {'partial', id...} naming the gone ones.
local function check_leases(keys, args, n)
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
  return nil
end

-- The tasks' fields, read before the first write: a missing one fails the call unchanged.
local function commit_fields(keys, args, n, now)
  local fields = {}
  for i = 4, 3 + 2 * n, 2 do
    fields[i] = task_fields(keys, args[i], now)
  end
  return fields
end

-- Retires the n committed tasks of args (fields read by commit_fields), one done record each, and
-- counts them: done, done_bytes, words (the given total, else the tasks' own), recomputed, commits.
local function record_done(keys, now, worker, args, n, fields, total_words)
  local done = meta_int(keys, 'done')
  local bytes, recomputed, words = 0, 0, 0
  for i = 4, 3 + 2 * n, 2 do
    local id, t = args[i], fields[i]
    local f, prev = retire(keys, id)
    -- The record is the committing worker's: its own claim and delivery, also when it commits late,
    -- after the task went to another worker.
    local claimed, attempts = f.claimed, f.attempts
    if worker ~= f.holder and prev and prev.holder == worker then
      claimed, attempts = prev.claimed, prev.attempts
    end
    done = done + 1
    redis.call('XADD', keys[K_DONE], done .. '-0', 'task', id, 'path', t.path, 'start', t.start, 'end', t['end'],
      'injected_ms', t.injected_ms, 'due_ms', t.due_ms or t.injected_ms, 'claimed_ms', claimed,
      'committed_ms', now, 'worker', worker, 'attempts', attempts, 'words', args[i + 1], 'bytes', task_bytes(t))
    bytes = bytes + task_bytes(t)
    words = words + tonumber(args[i + 1])
    if f.attempts > 1 then
      recomputed = recomputed + 1
    end
  end
  local meta = keys[K_META]
  redis.call('HSET', meta, 'done', done)
  -- Keep the last cfg.history records (0: all): exact MINID trimming, so every replica and Raft node
  -- keeps the same ones.
  local history = meta_int(keys, 'cfg.history')
  if history > 0 and done > history then
    redis.call('XTRIM', keys[K_DONE], 'MINID', (done - history + 1) .. '-0')
  end
  redis.call('HINCRBY', meta, 'done_bytes', bytes)
  redis.call('HINCRBY', meta, 'words', total_words or words)
  redis.call('HINCRBY', meta, 'recomputed', recomputed)
  redis.call('HINCRBY', meta, 'commits', 1)
end

-- commit(now, worker, n, {id, words} * n, {count, k, word * k}...): the course's design, kept as the
-- `redis` aggregation: apply the merged counts of n tasks exactly once with one ZINCRBY per word. If any
-- of the tasks is no longer leased nothing changes (see check_leases).
local function commit(keys, args)
  local now, worker, n = clock(args[1]), args[2], int(args[3], 'task count')
  if n < 1 or #args < 3 + 2 * n then
    fail('commit takes now, worker, n, n id/words pairs, then groups of count, k, k words')
  end
  local first_group = 4 + 2 * n
  local increments, words = 0, 0
  -- Words come grouped by count (most words of a commit share a handful of small counts), so each
  -- count is passed and checked once, not once per word.
  local i = first_group
  while i <= #args do
    local c, k = int(args[i], 'a word count'), int(args[i + 1] or '', 'a group length')
    if c <= 0 then
      fail('word counts must be positive integers, got ' .. tostring(args[i]))
    end
    if k < 1 or i + 1 + k > #args then
      fail('a group of words with count ' .. args[i] .. ' has a bad length ' .. tostring(args[i + 1]))
    end
    words, increments, i = words + c * k, increments + k, i + 2 + k
  end
  require_job(keys)
  local refused = check_leases(keys, args, n)
  if refused then
    return refused
  end
  local fields = commit_fields(keys, args, n, now)
  lease_clock(keys, now)
  record_done(keys, now, worker, args, n, fields, words)
  local call, counts = redis.call, keys[K_COUNTS]
  i = first_group
  while i <= #args do
    local c, last = args[i], i + 1 + tonumber(args[i + 1])
    for j = i + 2, last do
      call('ZINCRBY', counts, c, args[j])
    end
    i = last + 1
  end
  redis.call('HINCRBY', keys[K_META], 'increments', increments)
  note_finished(keys, now)
  return { 'ok', n }
end

local function partitions(keys)
  return tonumber(redis.call('HGET', keys[K_META], 'cfg.partitions') or '1') or 1
end

local function partition(keys, value)
  local p = int(value, 'partition')
  if p < 0 or p >= partitions(keys) then
    fail('partition ' .. p .. ' is not below the job\'s ' .. partitions(keys) .. ' partitions')
  end
  return p
end

local function stage_key(keys, worker, token, p)
  return job_key(keys, 'stage:' .. worker .. ':' .. token .. ':' .. p)
end

-- stage(now, worker, token, p, offset, piece): write a piece of a large blob (a commit's partial or a
-- merge's result) at byte `offset` of the blob staged under the worker's token, so that no single call
-- carries more than a bounded piece. The commit or merge that names the token makes it visible by
-- renaming it. The first piece (offset 0) replaces whatever the key held, so nothing a killed process
-- left there is ever appended to; a later piece is appended only where the blob ends, and a piece
-- already there (the same call retried after a lost reply) is not appended twice. Returns the
-- blob's length so far, or -1 when it does not end at `offset` (Redis lost it: stage it again).
local function stage(keys, args)
  clock(args[1])
  local worker, token, piece = args[2], args[3], args[6]
  if worker == nil or worker == '' or token == nil or token == '' or piece == nil then
    fail('stage takes now, worker, token, partition, offset and a piece')
  end
  local offset = int(args[5], 'offset')
  if offset < 0 then
    fail('a staged piece\'s offset must be >= 0, got ' .. offset)
  end
  require_job(keys)
  local p = partition(keys, args[4])
  local key = stage_key(keys, worker, token, p)
  -- Registered, so that `drop` finds a staged blob its worker never committed without a SCAN.
  redis.call('ZADD', job_key(keys, 'staged'), 0, key)
  if offset == 0 then
    redis.call('SET', key, piece)
    return #piece
  end
  local len = redis.call('STRLEN', key)
  if len == offset then
    return redis.call('APPEND', key, piece)
  elseif len == offset + #piece and redis.call('GETRANGE', key, offset, len - 1) == piece then
    return len
  end
  return -1
end

-- Reads the (p, how, blob) triples of a commit or merge from args[first]: how is 'i' (the blob is
-- inline) or 's' (staged under the token; the third item is then the blob's length). Returns the
-- list, or nil when a staged blob is missing or not of that length (Redis lost it, or a piece went
-- astray: the caller stages again; a blob that is not exactly what its worker staged is never used).
local function blob_args(keys, args, first, worker, token)
  local out = {}
  if (#args - first + 1) % 3 ~= 0 then
    fail('blobs come as partition, i|s, bytes triples')
  end
  for i = first, #args, 3 do
    local p = partition(keys, args[i])
    local how = args[i + 1]
    if how == 's' then
      local len = int(args[i + 2], 'a staged blob\'s length')
      if redis.call('STRLEN', stage_key(keys, worker, token, p)) ~= len or len == 0 then
        return nil
      end
    elseif how ~= 'i' then
      fail('a blob is inline (i) or staged (s), got ' .. tostring(how))
    end
    out[#out + 1] = { p = p, staged = how == 's', bytes = args[i + 2] }
  end
  return out
end

-- Stores a blob at `key`: the inline bytes, or the staged key renamed (O(1), whatever its size).
local function put_blob(keys, key, b, worker, token)
  if b.staged then
    local staged = stage_key(keys, worker, token, b.p)
    redis.call('RENAME', staged, key)
    redis.call('ZREM', job_key(keys, 'staged'), staged)
  else
    redis.call('SET', key, b.bytes)
  end
end

local function drop_staged(keys, worker, token)
  for p = 0, partitions(keys) - 1 do
    local staged = stage_key(keys, worker, token, p)
    redis.call('DEL', staged)
    redis.call('ZREM', job_key(keys, 'staged'), staged)
  end
end

-- commit_parts(now, worker, token, n, {id, words} * n, {p, i|s, blob}...): the default (`workers`)
-- aggregation. Exactly-once as commit, but the counts are stored as one partial-counts blob per
-- partition (O(bytes) for Redis, nothing per word), for workers to merge later. {'restage'} when a
-- staged blob is gone (nothing changed).
local function commit_parts(keys, args)
  local now, worker, token = clock(args[1]), args[2], args[3]
  local n = int(args[4], 'task count')
  if worker == nil or worker == '' or token == nil or n < 1 or #args < 4 + 2 * n then
    fail('commit_parts takes now, worker, token, n, n id/words pairs, then partition blobs')
  end
  require_job(keys)
  -- check_leases and commit_fields read the pairs from args[4]: shift the view by one.
  local view = { args[1], args[2], args[4] }
  for i = 5, 4 + 2 * n do
    view[i - 1] = args[i]
  end
  local blobs = blob_args(keys, args, 5 + 2 * n, worker, token)
  local refused = check_leases(keys, view, n)
  if refused then
    drop_staged(keys, worker, token)
    return refused
  end
  if blobs == nil then
    return { 'restage' }
  end
  local fields = commit_fields(keys, view, n, now)
  lease_clock(keys, now)
  record_done(keys, now, worker, view, n, fields)
  local meta = keys[K_META]
  for _, b in ipairs(blobs) do
    local seq = redis.call('HINCRBY', meta, 'partial_seq', 1)
    put_blob(keys, job_key(keys, 'part:' .. b.p .. ':' .. seq), b, worker, token)
    redis.call('ZADD', job_key(keys, 'parts:' .. b.p), now, seq)
  end
  redis.call('HINCRBY', meta, 'partials', #blobs)
  note_finished(keys, now)
  return { 'ok', n }
end

-- A merge's inputs are the partition's result (once a merge made one: gen > 0) and the partials
-- seqs[from..to]; they are deleted only by the merge that replaces them, so one that is missing was
-- lost (see `lost`): checked when a merge is handed out and again when it is committed.
local function require_merge_inputs(keys, now, p, gen, seqs, from, to)
  if gen > 0 and redis.call('EXISTS', job_key(keys, 'result:' .. p)) == 0 then
    lost(keys, now, job_key(keys, 'result:' .. p) .. ' (the merged counts of partition ' .. p .. ') vanished')
  end
  for i = from, to do
    local key = job_key(keys, 'part:' .. p .. ':' .. seqs[i])
    if redis.call('EXISTS', key) == 0 then
      lost(keys, now, key .. ' (partial counts not merged yet) vanished')
    end
  end
end

-- merge_claim(now, worker, lease_ms, min_parts, min_age_ms, max_parts, max_partitions): up to
-- max_partitions partitions to merge, leased to this worker: the lowest ones whose lease is free (or
-- already this worker's: a retried claim gets them again) and that have min_parts partials, or one
-- older than min_age_ms, or any once every task is done. Reply {{p, gen, seq...}...} (each with at
-- most max_parts of its oldest partials), {} when none is due. Several in one call, so a worker far
-- from Redis waits one round trip for a batch of merges, not one each.
local function merge_claim(keys, args)
  local now, worker = clock(args[1]), args[2]
  local lease_ms, min_parts = int(args[3], 'lease_ms'), int(args[4], 'min_parts')
  local min_age, max_parts = int(args[5], 'min_age_ms'), int(args[6], 'max_parts')
  local max_partitions = int(args[7], 'max_partitions')
  if worker == nil or worker == '' or lease_ms <= 0 or max_parts <= 0 or max_partitions <= 0 then
    fail('merge_claim needs a worker and positive lease_ms, max_parts and max_partitions')
  end
  require_job(keys)
  local partials = meta_int(keys, 'partials')
  if partials == 0 or is_stopped(keys) then
    return {}
  end
  -- Every partial the job counts is in one partition's index: an index that lost entries (evicted,
  -- deleted) would leave the job waiting forever for merges that cannot come, and its counts short.
  local indexed = 0
  for p = 0, partitions(keys) - 1 do
    indexed = indexed + redis.call('ZCARD', job_key(keys, 'parts:' .. p))
  end
  if indexed ~= partials then
    lost(keys, now, 'the partial-counts indexes ' .. job_key(keys, 'parts:*') .. ' list ' .. indexed ..
      ' of the job\'s ' .. partials .. ' partials')
  end
  local lnow = lease_clock(keys, now)
  local m = redis.call('HMGET', keys[K_META], 'state', 'tasks', 'done', 'dead', 'splits')
  local all_done = m[1] == 'sealed'
    and tonumber(m[3] or '0') + tonumber(m[4] or '0') == tonumber(m[2] or '0') + tonumber(m[5] or '0')
  local merge = job_key(keys, 'merge')
  local claims = {}
  for p = 0, partitions(keys) - 1 do
    local index = job_key(keys, 'parts:' .. p)
    local count = redis.call('ZCARD', index)
    if count > 0 then
      local held = redis.call('HGET', merge, 'lease:' .. p)
      local deadline, holder = 0, ''
      if held then
        deadline, holder = string.match(held, '^(%d+):(.*)$')
        deadline = tonumber(deadline)
      end
      local free = deadline <= lnow or holder == worker
      local oldest = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
      if free and (all_done or count >= min_parts or now - tonumber(oldest[2]) >= min_age) then
        local gen = tonumber(redis.call('HGET', merge, 'gen:' .. p) or '0')
        local reply = { p, gen }
        for _, seq in ipairs(redis.call('ZRANGE', index, 0, max_parts - 1)) do
          reply[#reply + 1] = seq
        end
        require_merge_inputs(keys, now, p, gen, reply, 3, #reply)
        redis.call('ZADD', keys[K_WORKERS], now, worker)
        redis.call('HSET', merge, 'lease:' .. p, (lnow + lease_ms) .. ':' .. worker)
        claims[#claims + 1] = reply
        if #claims >= max_partitions then
          return claims
        end
      end
    end
  end
  return claims
end

-- merge_commit(now, worker, token, p, gen, distinct, words, n, seq * n, {p, i|s, result}, {p, i, top}):
-- the merged result of partition p (`distinct` words, `words` in all) replaces the result of
-- generation `gen` and exactly the n partials it was made from, never one it did not read. {'stale'}
-- (nothing changed) when the lease went to another worker or another merge came first; {'restage'}
-- when the staged result is gone. Each partition's `words` is kept, so that a finished job's
-- partitions can be checked to hold every word its commits counted.
local function merge_commit(keys, args)
  local now, worker, token = clock(args[1]), args[2], args[3]
  local gen, distinct = int(args[5], 'gen'), int(args[6], 'distinct')
  local words, n = int(args[7], 'words'), int(args[8], 'partial count')
  if worker == nil or worker == '' or token == nil or n < 1 or #args ~= 8 + n + 6 then
    fail('merge_commit takes now, worker, token, p, gen, distinct, words, n, n seqs, the result and the top blob')
  end
  require_job(keys)
  local p = partition(keys, args[4])
  local blobs = blob_args(keys, args, 9 + n, worker, token)
  if blobs ~= nil and (blobs[1].p ~= p or blobs[2].p ~= p or blobs[2].staged) then
    fail('merge_commit: the result and top blobs must be of partition ' .. p .. ', the top inline')
  end
  local merge = job_key(keys, 'merge')
  local index = job_key(keys, 'parts:' .. p)
  local held = redis.call('HGET', merge, 'lease:' .. p) or ''
  local _, holder = string.match(held, '^(%d+):(.*)$')
  local stale = holder ~= worker or tonumber(redis.call('HGET', merge, 'gen:' .. p) or '0') ~= gen
  for i = 9, 8 + n do
    if not redis.call('ZSCORE', index, args[i]) then
      stale = true
    end
  end
  if stale then
    drop_staged(keys, worker, token)
    return { 'stale' }
  end
  require_merge_inputs(keys, now, p, gen, args, 9, 8 + n)
  if blobs == nil then
    return { 'restage' }
  end
  put_blob(keys, job_key(keys, 'result:' .. p), blobs[1], worker, token)
  put_blob(keys, job_key(keys, 'top:' .. p), blobs[2], worker, token)
  for i = 9, 8 + n do
    redis.call('DEL', job_key(keys, 'part:' .. p .. ':' .. args[i]))
    redis.call('ZREM', index, args[i])
  end
  local meta = keys[K_META]
  redis.call('HINCRBY', meta, 'partials', -n)
  local before = tonumber(redis.call('HGET', merge, 'distinct:' .. p) or '0')
  redis.call('HINCRBY', meta, 'distinct', distinct - before)
  redis.call('HSET', merge, 'distinct:' .. p, distinct, 'words:' .. p, words, 'gen:' .. p, gen + 1)
  redis.call('HDEL', merge, 'lease:' .. p)
  redis.call('HINCRBY', meta, 'merges', 1)
  note_finished(keys, now)
  return { 'ok' }
end

-- fail(now, worker, id, error): the task's input cannot be processed (missing, unreadable, malformed):
-- move it to the dead stream with the error. {'dup'} if it is no longer pending.
local function fail_task(keys, args)
  local now, worker, id, message = clock(args[1]), args[2], args[3], args[4]
  if id == nil or message == nil then
    fail('fail takes now, worker, task id and an error message')
  end
  require_job(keys)
  if not redis.call('ZSCORE', keys[K_LEASES], id) then
    return { 'dup' }
  end
  bury(keys, id, task_fields(keys, id, now), now, worker, inflight(keys, id).attempts, message)
  note_finished(keys, now)
  return { 'ok' }
end

-- fail_piece(now, worker, id, index, path, error): one small file packed into task `id` cannot be read:
-- record it in the dead stream, once however often the task is retried, while the task's other files
-- are committed as usual. {'dup'} if the task is no longer leased.
local function fail_piece(keys, args)
  local now, worker, id = clock(args[1]), args[2], args[3]
  local index, path, message = int(args[4], 'piece index'), args[5], args[6]
  if id == nil or path == nil or message == nil then
    fail('fail_piece takes now, worker, task id, piece index, path and an error message')
  end
  require_job(keys)
  if not redis.call('ZSCORE', keys[K_LEASES], id) then
    return { 'dup' }
  end
  local piece = task_pieces(task_fields(keys, id, now))[index + 1]
  if piece == nil then
    fail('task ' .. id .. ' has no file ' .. index)
  end
  if redis.call('HSETNX', job_key(keys, 'failed'), id .. ':' .. index, now) == 1 then
    local n = redis.call('HINCRBY', keys[K_META], 'dead_records', 1)
    redis.call('XADD', keys[K_DEAD], n .. '-0', 'task', id, 'path', piece.path, 'start', piece.start,
      'end', piece['end'], 'failed_ms', now, 'worker', worker, 'attempts', inflight(keys, id).attempts,
      'error', message)
  end
  return { 'ok' }
end

-- defer(now, worker, id, live_window_ms): this worker cannot open the task's input (missing or
-- unreadable here; a worker on another host may have it). Unless every live worker has now said so,
-- the task is released uncharged, and claims hand it to the others first: {'deferred'}. When every
-- live worker has, {'last', n}: the worker goes on to fail it (or its file) as usual. {'dup'} if the
-- worker no longer holds it.
local function defer(keys, args)
  local now, worker, id = clock(args[1]), args[2], args[3]
  local live_window = int(args[4], 'live_window_ms')
  if worker == nil or worker == '' or id == nil or id == '' then
    fail('defer takes now, worker, task id and live_window_ms')
  end
  require_job(keys)
  local f = held_by(keys, id, worker)
  if not f then
    return { 'dup' }
  end
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  local lacks = lacks_key(keys, id)
  redis.call('SADD', lacks, worker)
  local live = redis.call('ZCOUNT', keys[K_WORKERS], now - live_window, '+inf')
  local n = redis.call('SCARD', lacks)
  if n >= live then
    return { 'last', n }
  end
  remember_holder(keys, id, f)
  f.holder = ''
  set_inflight(keys, id, f)
  redis.call('ZADD', keys[K_LEASES], 0, id)
  return { 'deferred' }
end

-- split(now, worker, id, cut): the worker holding task `id` alone after its last holder fell silent
-- counting it (claim's reply says it was charged) splits it instead of counting it, so that only
-- the input that kills workers is given up, not the files packed with it: a task of several files
-- into files 1..cut and cut+1..n; a task of one range into start..cut and cut..end (the worker
-- chose `cut` at whitespace, or between CSV records). The task is retired; its two parts, `<id>.1`
-- and `<id>.2`, wait released (each to be handed out alone) with their fields in `splits`, and the
-- job counts one task more to settle (`splits`). Exactly once: a late commit of the whole task
-- finds it gone (a duplicate) and its parts carry every file; a split after the whole was
-- committed finds it gone ({'dup'}). {'ok', id1, id2}.
local function split(keys, args)
  local now, worker, id = clock(args[1]), args[2], args[3]
  local cut = int(args[4], 'cut')
  if worker == nil or worker == '' or id == nil or id == '' then
    fail('split takes now, worker, task id and a cut')
  end
  require_job(keys)
  local f = held_by(keys, id, worker)
  if not f then
    return { 'dup' }
  end
  local t = task_fields(keys, id, now)
  local pieces = task_pieces(t)
  local a, b
  if #pieces >= 2 then
    if cut < 1 or cut >= #pieces then
      fail('task ' .. id .. ' has ' .. #pieces .. ' files: cut ' .. cut .. ' is not between them')
    end
    a, b = task_of_pieces(t, pieces, 1, cut), task_of_pieces(t, pieces, cut + 1, #pieces)
  else
    if cut <= tonumber(t.start) or cut >= tonumber(t['end']) then
      fail('cut ' .. cut .. ' is not inside task ' .. id .. ' (' .. t.start .. '..' .. t['end'] .. ')')
    end
    a, b = task_of_pieces(t, pieces, 1, 1), task_of_pieces(t, pieces, 1, 1)
    a['end'], b.start = tostring(cut), tostring(cut)
  end
  lease_clock(keys, now)
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  retire(keys, id)
  local splits = job_key(keys, 'splits')
  local ids = { id .. '.1', id .. '.2' }
  for i, child in ipairs({ a, b }) do
    redis.call('HSET', splits, ids[i], encode_split(child))
    redis.call('ZADD', keys[K_LEASES], 0, ids[i])
    set_inflight(keys, ids[i], { attempts = f.attempts, charged = 0, solo = 0, claimed = now, lclaimed = 0,
      holder = '' })
  end
  redis.call('HINCRBY', keys[K_META], 'splits', 1)
  return { 'ok', ids[1], ids[2] }
end

-- stop(now, kind, reason): end the job without a result, as `cancelled` (an operator's `jobs cancel`,
-- a stream stopped before its end) or `failed` (a worker found a key of the job lost). Workers see it
-- finished and leave; the driver and every view report the reason. {'ok'}; {'ended', state} when it
-- had already stopped (the first reason stays), or finished and is asked to be cancelled.
local function stop(keys, args)
  local now, kind, reason = clock(args[1]), args[2], args[3]
  if not STOPPED[kind or ''] or reason == nil or reason == '' then
    fail('stop takes now, cancelled or failed, and a reason')
  end
  require_job(keys)
  -- A finished job can still turn out failed (a key of its result lost after the end), never
  -- cancelled.
  if is_stopped(keys) or (kind == 'cancelled' and is_finished(keys)) then
    return { 'ended', redis.call('HGET', keys[K_META], 'state') }
  end
  stop_job(keys, now, kind, reason)
  return { 'ok' }
end

-- join(now, worker, instance, live_window_ms): a worker process starts under the name `worker`; its
-- `instance` is random, unique to the process. Names are the holders of leases and of staged blobs,
-- so two live processes must never share one: {'taken', ms} when another instance of that name was
-- heard from `ms` ago, within the live window (the worker waits until the name is free, a restart of
-- the same worker after its last life's window, or is refused); else {'ok'}.
local function join(keys, args)
  local now, worker, instance = clock(args[1]), args[2], args[3]
  local live_window = int(args[4], 'live_window_ms')
  if worker == nil or worker == '' or instance == nil or instance == '' then
    fail('join takes now, worker, instance and live_window_ms')
  end
  require_job(keys)
  local field = 'inst:' .. worker
  local heard = redis.call('ZSCORE', keys[K_WORKERS], worker)
  local holder = redis.call('HGET', keys[K_META], field)
  if holder and holder ~= instance and heard and now - tonumber(heard) < live_window then
    return { 'taken', now - tonumber(heard) }
  end
  redis.call('HSET', keys[K_META], field, instance)
  redis.call('ZADD', keys[K_WORKERS], now, worker)
  return { 'ok' }
end

-- leave(now, worker...): workers that exited (stopped by their driver, or Ctrl-C on `redcount worker`)
-- are no longer live at once, instead of for the live window after their last call, and their names
-- are free. Their leases are left to expire as a dead worker's would. Returns how many were live.
local function leave(keys, args)
  clock(args[1])
  require_job(keys)
  local left = 0
  for i = 2, #args do
    left = left + redis.call('ZREM', keys[K_WORKERS], args[i])
    redis.call('HDEL', keys[K_META], 'inst:' .. args[i])
  end
  return left
end

-- The register of the jobs of this Redis: KEYS is the one key `rc:jobs`, a sorted set of job name ->
-- when it was registered (its own key, outside every job's hash tag: on a Redis Cluster it lives on
-- one shard). Listing jobs reads it instead of scanning a keyspace that other applications share.
local JOBS_KEY = 'rc:jobs'

-- jobs(now, add|rm, name...): registers jobs (a name already there keeps its time) or removes them
-- from the register. Returns how many changed.
local function jobs(keys, args)
  local now, op = clock(args[1]), args[2]
  if #keys ~= 1 or keys[1] ~= JOBS_KEY then
    fail('jobs takes the one key ' .. JOBS_KEY)
  end
  if op ~= 'add' and op ~= 'rm' then
    fail('jobs takes now, add or rm, then job names, got ' .. tostring(op))
  end
  for i = 3, #args do
    if #args[i] == 0 or #args[i] > 100 or string.find(args[i], '[^%w%-_%.]') then
      fail('not a job name: ' .. args[i])
    end
  end
  local changed = 0
  for i = 3, #args do
    if op == 'add' then
      changed = changed + redis.call('ZADD', JOBS_KEY, 'NX', now, args[i])
    else
      changed = changed + redis.call('ZREM', JOBS_KEY, args[i])
    end
  end
  return changed
end

-- event(now, kind, detail): note a fault or operator event (worker killed, straggler ...) in the job, so
-- latency plots can mark it later. Returns the event's number.
local function event(keys, args)
  local now, kind, detail = clock(args[1]), args[2], args[3] or ''
  if kind == nil or kind == '' then
    fail('event needs a kind')
  end
  require_job(keys)
  local n = redis.call('HINCRBY', keys[K_META], 'events', 1)
  redis.call('XADD', keys[K_EVENTS], n .. '-0', 'at_ms', now, 'kind', kind, 'detail', detail)
  return n
end

-- Keys or members one drop call deletes at most: a job of any size is removed in calls of bounded
-- length, with every other client served in between.
local DROP_BATCH = 1000

-- drop(now, force): delete job J: every key the library writes for it, each found by name from what
-- the job records (partitions, their partials, the staged-blob register, the tasks in flight), never by
-- SCAN, which inside one call would walk the whole keyspace of every job and client. Keys are
-- UNLINKed (a large set is freed off the main thread). One call deletes at most DROP_BATCH of them
-- and answers {deleted, 1} while more remain: call again. The meta hash goes last, so an interrupted
-- drop can be resumed; {deleted, 0} once the job is gone. Refused while the job runs, unless forced.
local function drop(keys, args)
  clock(args[1])
  if args[2] ~= '0' and args[2] ~= '1' then
    fail('drop takes now and force (0 or 1)')
  end
  if redis.call('EXISTS', keys[K_META]) == 0 and args[2] == '1' then
    -- What an eviction or another client's DEL left of a job without its meta hash: the nine keys
    -- and the partitions found from 0 up (their number was in the lost spec).
    local deleted = 0
    for p = 0, 4095 do
      local any = 0
      for _, suffix in ipairs({ 'parts:', 'result:', 'top:' }) do
        local key = job_key(keys, suffix .. p)
        if suffix == 'parts:' then
          for _, seq in ipairs(redis.call('ZRANGE', key, 0, DROP_BATCH - 1)) do
            deleted = deleted + redis.call('UNLINK', job_key(keys, 'part:' .. p .. ':' .. seq))
          end
          if redis.call('ZCARD', key) > DROP_BATCH then
            redis.call('ZREMRANGEBYRANK', key, 0, DROP_BATCH - 1)
            return { deleted, 1 }
          end
        end
        local n = redis.call('UNLINK', key)
        deleted, any = deleted + n, any + n
      end
      if any == 0 and p >= 16 then
        break
      end
    end
    for _, key in ipairs(redis.call('ZRANGE', job_key(keys, 'staged'), 0, -1)) do
      deleted = deleted + redis.call('UNLINK', key)
    end
    for _, id in ipairs(redis.call('ZRANGE', keys[K_LEASES], 0, -1)) do
      deleted = deleted + redis.call('UNLINK', lacks_key(keys, id))
    end
    for _, suffix in ipairs(AUX_SUFFIXES) do
      deleted = deleted + redis.call('UNLINK', job_key(keys, suffix))
    end
    for _, key in ipairs(keys) do
      deleted = deleted + redis.call('UNLINK', key)
    end
    return { deleted, 0 }
  end
  require_job(keys)
  if args[2] == '0' and not is_finished(keys) then
    local m = redis.call('HMGET', keys[K_META], 'done', 'tasks')
    local name = job_name(keys)
    fail('job \'' .. name .. '\' is still running (' .. (m[1] or '0') .. ' of ' .. (m[2] or '0') ..
      ' tasks done): wait for it to finish, or remove it while it runs with `redcount jobs rm ' .. name ..
      ' --force`')
  end
  local deleted, work = 0, 0
  local function unlink(key)
    deleted = deleted + redis.call('UNLINK', key)
  end
  -- Members of a sorted set, each naming a key (`name(member)`), in bounded pages; false when the
  -- batch ran out first.
  local function unlink_members(set, name)
    -- The set goes when its last member is removed: counted then, like any key deleted.
    local existed = redis.call('EXISTS', set)
    while work < DROP_BATCH do
      local members = redis.call('ZRANGE', set, 0, DROP_BATCH - work - 1)
      work = work + #members
      if #members == 0 then
        deleted = deleted + existed
        return true
      end
      for _, m in ipairs(members) do
        unlink(name(m))
      end
      redis.call('ZREM', set, unpack(members))
    end
    return false
  end
  for p = 0, partitions(keys) - 1 do
    if not unlink_members(job_key(keys, 'parts:' .. p), function(seq)
          return job_key(keys, 'part:' .. p .. ':' .. seq)
        end) then
      return { deleted, 1 }
    end
    unlink(job_key(keys, 'result:' .. p))
    unlink(job_key(keys, 'top:' .. p))
  end
  if not unlink_members(job_key(keys, 'staged'), function(key) return key end) then
    return { deleted, 1 }
  end
  -- Who could not open a task is kept until the task is retired: only tasks still leased have it.
  if not unlink_members(keys[K_LEASES], function(id) return lacks_key(keys, id) end) then
    return { deleted, 1 }
  end
  -- (`staged` went with its last member above: unlinking it again finds nothing.)
  for _, suffix in ipairs(AUX_SUFFIXES) do
    unlink(job_key(keys, suffix))
  end
  for i, key in ipairs(keys) do
    if i ~= K_META then
      unlink(key)
    end
  end
  unlink(keys[K_META])
  return { deleted, 0 }
end

local STATUS_FIELDS = { 'state', 'tasks', 'bytes', 'delivered', 'done', 'done_bytes', 'dead', 'words',
  'recomputed', 'redelivered', 'duplicates', 'increments', 'commits', 'created_ms', 'sealed_ms', 'run_id',
  'speculated', 'events', 'partials', 'merges', 'finished_ms', 'dead_records', 'stop_reason', 'splits' }

-- Distinct words in the result so far: the sorted set's size, or what merges recorded.
local function distinct_words(keys)
  if redis.call('HGET', keys[K_META], 'cfg.aggregation') == 'workers' then
    return meta_int(keys, 'distinct')
  end
  return redis.call('ZCARD', keys[K_COUNTS])
end

-- top(k): the k most frequent words of a ZINCRBY job as word, count pairs (those above the cutoff
-- count in ZREVRANGE's order, then the cutoff's ties by word bytes ascending), from one snapshot: two separate reads would race a commit that moves a
-- word across the cutoff between them (and show fewer than k). O(log N + k).
local function top(keys, args)
  local k = int(args[1], 'k')
  if k < 1 or k > 100000 then
    fail('top takes k between 1 and 100000')
  end
  require_job(keys)
  local head = redis.call('ZREVRANGE', keys[K_COUNTS], 0, k - 1, 'WITHSCORES')
  if #head == 0 then
    return {}
  end
  local cutoff = head[#head]
  local reply = {}
  for i = 1, #head, 2 do
    if tonumber(head[i + 1]) > tonumber(cutoff) then
      reply[#reply + 1] = head[i]
      reply[#reply + 1] = head[i + 1]
    end
  end
  -- ZREVRANGE orders a tie group by word descending: take the cutoff's group ascending instead.
  local missing = k - #reply / 2
  for _, word in ipairs(redis.call('ZRANGEBYSCORE', keys[K_COUNTS], cutoff, cutoff, 'LIMIT', 0, missing)) do
    reply[#reply + 1] = word
    reply[#reply + 1] = cutoff
  end
  return reply
end

-- status(now, live_window_ms): read-only counters as field/value pairs in a fixed order.
local function status(keys, args)
  local now, live_window = clock(args[1]), int(args[2], 'live_window_ms')
  require_job(keys)
  local values = redis.call('HMGET', keys[K_META], unpack(STATUS_FIELDS))
  local finished = is_finished(keys)
  local reply = {}
  for i, field in ipairs(STATUS_FIELDS) do
    reply[#reply + 1] = field
    reply[#reply + 1] = values[i] or ''
  end
  local extra = {
    'in_flight', redis.call('ZCARD', keys[K_LEASES]),
    -- A job that is over has no live workers, whatever its workers' last calls were.
    'live_workers', finished and 0 or redis.call('ZCOUNT', keys[K_WORKERS], now - live_window, '+inf'),
    'distinct_words', distinct_words(keys),
    'finished', finished and 1 or 0,
    'now_ms', now,
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
redis.register_function('rc_commit_parts', commit_parts)
redis.register_function('rc_stage', stage)
redis.register_function('rc_merge_claim', merge_claim)
redis.register_function('rc_merge_commit', merge_commit)
redis.register_function('rc_fail', fail_task)
redis.register_function('rc_fail_piece', fail_piece)
redis.register_function('rc_defer', defer)
redis.register_function('rc_event', event)
redis.register_function('rc_stop', stop)
redis.register_function('rc_join', join)
redis.register_function('rc_leave', leave)
redis.register_function('rc_jobs', jobs)
redis.register_function('rc_split', split)
redis.register_function('rc_drop', drop)
redis.register_function { function_name = 'rc_status', callback = status, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_top', callback = top, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_version', callback = version, flags = { 'no-writes' } }
