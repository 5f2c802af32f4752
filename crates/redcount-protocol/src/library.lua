#!lua name=redcount
-- redcount's coordination protocol: every state change of a job is one call of a function below,
-- so each change is atomic on a single Redis, after a restore from a checkpoint, on replicas, and on a
-- Raft state machine that re-executes every call. docs/PROTOCOL.md describes every function. Rules:
--   * time is an argument (`now`, ms): no TIME, no TTLs, no XAUTOCLAIM, no XPENDING IDLE;
--   * no randomness and no replies that depend on hash iteration order;
--   * explicit stream ids everywhere (tasks `seq-0`, done `n-0`, dead `n-0`);
--   * validate every argument before the first write (Redis has no rollback).
-- KEYS are always the nine keys of one job, in the order of `JobKeys::all` in keys.rs.

local LIBRARY_VERSION = 16

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
  redis.call('HINCRBY', keys[K_META], 'dead', 1)
  local n = redis.call('HINCRBY', keys[K_META], 'dead_records', 1)
  redis.call('XADD', keys[K_DEAD], n .. '-0', 'task', id, 'path', t.path, 'start', t.start, 'end', t['end'],
    'failed_ms', now, 'worker', worker, 'attempts', attempts, 'error', message)
end

local function task_reply(id, t, attempts)
  return { id, t.path, t.start, t['end'], t.fmt, t.injected_ms, attempts, t.more or '' }
end

-- Bytes of a task: its own range, plus those of the small files packed with it (`more` starts with
-- their total, `<bytes>|...`).
local function task_bytes(t)
  local more = tonumber(string.match(t.more or '', '^(%d+)|') or '0')
  return tonumber(t['end']) - tonumber(t.start) + more
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
    and tonumber(redis.call('HGET', keys[K_META], 'partials') or '0') == 0
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
    'recomputed', 0, 'redelivered', 0, 'duplicates', 0, 'increments', 0, 'commits', 0, 'speculated', 0, 'events', 0,
    'partials', 0, 'partial_seq', 0, 'merges', 0, 'distinct', 0, 'dead_records', 0)
  for i = 3, #args, 2 do
    redis.call('HSET', keys[K_META], args[i], args[i + 1])
  end
  return { 1, run_id }
end

-- enqueue(now, {seq, path, start, end, fmt, more}...): add tasks with ids `seq-0`; `more` is empty, or the
-- other ranges of a task that packs small files (`<their bytes>|` then path, start, end, fmt, each
-- followed by a NUL byte). A task whose seq is not above the job's last one is already there (a re-send
-- after a crash or rollback) and is skipped.
local function enqueue(keys, args)
  local now = int(args[1], 'now')
  if (#args - 1) % 6 ~= 0 then
    fail('enqueue takes now and groups of seq, path, start, end, fmt, more')
  end
  require_job(keys)
  local last_seq = meta_int(keys, 'last_seq')
  local prev, fresh = -1, {}
  for i = 2, #args, 6 do
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
    local t = { path = args[i + 1], start = args[i + 2], ['end'] = args[i + 3], fmt = args[i + 4] }
    if args[i + 5] == '' then
      redis.call('XADD', keys[K_TASKS], args[i] .. '-0', 'path', t.path, 'start', t.start, 'end', t['end'],
        'fmt', t.fmt, 'injected_ms', now)
    else
      t.more = args[i + 5]
      redis.call('XADD', keys[K_TASKS], args[i] .. '-0', 'path', t.path, 'start', t.start, 'end', t['end'],
        'fmt', t.fmt, 'injected_ms', now, 'more', t.more)
    end
    bytes = bytes + task_bytes(t)
  end
  if #fresh > 0 then
    redis.call('HINCRBY', keys[K_META], 'tasks', #fresh)
    redis.call('HINCRBY', keys[K_META], 'bytes', bytes)
    redis.call('HSET', keys[K_META], 'last_seq', prev)
  end
  return { #fresh, (#args - 1) / 6 - #fresh }
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
      count, bytes = count + 1, bytes + task_bytes(t)
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
      local size = task_bytes(t)
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
local function commit_fields(keys, args, n)
  local fields = {}
  for i = 4, 3 + 2 * n, 2 do
    fields[i] = task_fields(keys, args[i])
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
    local attempts, claimed = retire(keys, id)
    done = done + 1
    redis.call('XADD', keys[K_DONE], done .. '-0', 'task', id, 'path', t.path, 'start', t.start, 'end', t['end'],
      'injected_ms', t.injected_ms, 'claimed_ms', claimed, 'committed_ms', now, 'worker', worker,
      'attempts', attempts, 'words', args[i + 1])
    bytes = bytes + task_bytes(t)
    words = words + tonumber(args[i + 1])
    if attempts > 1 then
      recomputed = recomputed + 1
    end
  end
  local meta = keys[K_META]
  redis.call('HSET', meta, 'done', done)
  redis.call('HINCRBY', meta, 'done_bytes', bytes)
  redis.call('HINCRBY', meta, 'words', total_words or words)
  redis.call('HINCRBY', meta, 'recomputed', recomputed)
  redis.call('HINCRBY', meta, 'commits', 1)
end

-- commit(now, worker, n, {id, words} * n, {count, k, word * k}...): the course's design, kept as the
-- `redis` aggregation: apply the merged counts of n tasks exactly once with one ZINCRBY per word. If any
-- of the tasks is no longer leased nothing changes (see check_leases).
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
  local refused = check_leases(keys, args, n)
  if refused then
    return refused
  end
  local fields = commit_fields(keys, args, n)
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
  return { 'ok', n }
end

-- Keys beyond the nine share the job's prefix and hash tag, `rc:{J}:` .. suffix (keys.rs builds the
-- same names): `parts:<p>` (sorted set: partial seq -> committed_ms), `part:<p>:<seq>` (one partial
-- blob), `result:<p>` (the merged blob), `top:<p>` (its top-K blob), `merge` (hash: `lease:<p>` ->
-- `deadline:worker`, `gen:<p>`, `distinct:<p>`), `stage:<worker>:<token>:<p>` (a blob being staged).
local function job_key(keys, suffix)
  return string.sub(keys[K_META], 1, -5) .. suffix
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

-- stage(now, worker, token, p, piece): append a piece of a large blob (a commit's partial or a merge's
-- result) under the worker's token, so that no single call carries more than a bounded piece. The
-- commit or merge that names the token makes it visible by renaming it. Returns its length so far.
local function stage(keys, args)
  int(args[1], 'now')
  local worker, token, piece = args[2], args[3], args[5]
  if worker == nil or worker == '' or token == nil or token == '' or piece == nil then
    fail('stage takes now, worker, token, partition and a piece')
  end
  require_job(keys)
  local p = partition(keys, args[4])
  return redis.call('APPEND', stage_key(keys, worker, token, p), piece)
end

-- Reads the (p, how, blob) triples of a commit or merge from args[first]: how is 'i' (the blob is
-- inline) or 's' (staged under the token). Returns the list, or nil when a staged blob is missing (Redis
-- lost it: the caller stages again).
local function blob_args(keys, args, first, worker, token)
  local out = {}
  if (#args - first + 1) % 3 ~= 0 then
    fail('blobs come as partition, i|s, bytes triples')
  end
  for i = first, #args, 3 do
    local p = partition(keys, args[i])
    local how = args[i + 1]
    if how == 's' then
      if redis.call('EXISTS', stage_key(keys, worker, token, p)) == 0 then
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
    redis.call('RENAME', stage_key(keys, worker, token, b.p), key)
  else
    redis.call('SET', key, b.bytes)
  end
end

local function drop_staged(keys, worker, token)
  for p = 0, partitions(keys) - 1 do
    redis.call('DEL', stage_key(keys, worker, token, p))
  end
end

-- commit_parts(now, worker, token, n, {id, words} * n, {p, i|s, blob}...): the default (`workers`)
-- aggregation. Exactly-once as commit, but the counts are stored as one partial-counts blob per
-- partition (O(bytes) for Redis, nothing per word), for workers to merge later. {'restage'} when a
-- staged blob is gone (nothing changed).
local function commit_parts(keys, args)
  local now, worker, token = int(args[1], 'now'), args[2], args[3]
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
  local fields = commit_fields(keys, view, n)
  record_done(keys, now, worker, view, n, fields)
  local meta = keys[K_META]
  for _, b in ipairs(blobs) do
    local seq = redis.call('HINCRBY', meta, 'partial_seq', 1)
    put_blob(keys, job_key(keys, 'part:' .. b.p .. ':' .. seq), b, worker, token)
    redis.call('ZADD', job_key(keys, 'parts:' .. b.p), now, seq)
  end
  redis.call('HINCRBY', meta, 'partials', #blobs)
  return { 'ok', n }
end

-- merge_claim(now, worker, lease_ms, min_parts, min_age_ms, max_parts): a partition to merge, leased
-- to this worker: the lowest one whose lease is free and that has min_parts partials, or one older
-- than min_age_ms, or any once every task is done. Reply {p, gen, seq...} (at most max_parts of its
-- oldest partials), or {} when none is due.
local function merge_claim(keys, args)
  local now, worker = int(args[1], 'now'), args[2]
  local lease_ms, min_parts = int(args[3], 'lease_ms'), int(args[4], 'min_parts')
  local min_age, max_parts = int(args[5], 'min_age_ms'), int(args[6], 'max_parts')
  if worker == nil or worker == '' or lease_ms <= 0 or max_parts <= 0 then
    fail('merge_claim needs a worker and positive lease_ms and max_parts')
  end
  require_job(keys)
  if meta_int(keys, 'partials') == 0 then
    return {}
  end
  local m = redis.call('HMGET', keys[K_META], 'state', 'tasks', 'done', 'dead')
  local all_done = m[1] == 'sealed' and tonumber(m[3] or '0') + tonumber(m[4] or '0') == tonumber(m[2] or '0')
  local merge = job_key(keys, 'merge')
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
      local free = deadline <= now or holder == worker
      local oldest = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
      if free and (all_done or count >= min_parts or now - tonumber(oldest[2]) >= min_age) then
        redis.call('ZADD', keys[K_WORKERS], now, worker)
        redis.call('HSET', merge, 'lease:' .. p, (now + lease_ms) .. ':' .. worker)
        local reply = { p, tonumber(redis.call('HGET', merge, 'gen:' .. p) or '0') }
        for _, seq in ipairs(redis.call('ZRANGE', index, 0, max_parts - 1)) do
          reply[#reply + 1] = seq
        end
        return reply
      end
    end
  end
  return {}
end

-- merge_commit(now, worker, token, p, gen, distinct, n, seq * n, {p, i|s, result}, {p, i, top}): the
-- merged result of partition p replaces the result of generation `gen` and exactly the n partials it
-- was made from, never one it did not read. {'stale'} (nothing changed) when the lease went to another
-- worker or another merge came first; {'restage'} when the staged result is gone.
local function merge_commit(keys, args)
  local now, worker, token = int(args[1], 'now'), args[2], args[3]
  local gen, distinct, n = int(args[5], 'gen'), int(args[6], 'distinct'), int(args[7], 'partial count')
  if worker == nil or worker == '' or token == nil or n < 1 or #args ~= 7 + n + 6 then
    fail('merge_commit takes now, worker, token, p, gen, distinct, n, n seqs, the result and the top blob')
  end
  require_job(keys)
  local p = partition(keys, args[4])
  local blobs = blob_args(keys, args, 8 + n, worker, token)
  if blobs ~= nil and (blobs[1].p ~= p or blobs[2].p ~= p or blobs[2].staged) then
    fail('merge_commit: the result and top blobs must be of partition ' .. p .. ', the top inline')
  end
  local merge = job_key(keys, 'merge')
  local index = job_key(keys, 'parts:' .. p)
  local held = redis.call('HGET', merge, 'lease:' .. p) or ''
  local _, holder = string.match(held, '^(%d+):(.*)$')
  local stale = holder ~= worker or tonumber(redis.call('HGET', merge, 'gen:' .. p) or '0') ~= gen
  for i = 8, 7 + n do
    if not redis.call('ZSCORE', index, args[i]) then
      stale = true
    end
  end
  if stale then
    drop_staged(keys, worker, token)
    return { 'stale' }
  end
  if blobs == nil then
    return { 'restage' }
  end
  put_blob(keys, job_key(keys, 'result:' .. p), blobs[1], worker, token)
  put_blob(keys, job_key(keys, 'top:' .. p), blobs[2], worker, token)
  for i = 8, 7 + n do
    redis.call('DEL', job_key(keys, 'part:' .. p .. ':' .. args[i]))
    redis.call('ZREM', index, args[i])
  end
  local meta = keys[K_META]
  redis.call('HINCRBY', meta, 'partials', -n)
  local before = tonumber(redis.call('HGET', merge, 'distinct:' .. p) or '0')
  redis.call('HINCRBY', meta, 'distinct', distinct - before)
  redis.call('HSET', merge, 'distinct:' .. p, distinct, 'gen:' .. p, gen + 1)
  redis.call('HDEL', merge, 'lease:' .. p)
  redis.call('HINCRBY', meta, 'merges', 1)
  return { 'ok' }
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

-- fail_piece(now, worker, id, index, path, error): one small file packed into task `id` cannot be read:
-- record it in the dead stream, once however often the task is retried, while the task's other files
-- are committed as usual. {'dup'} if the task is no longer leased.
local function fail_piece(keys, args)
  local now, worker, id = int(args[1], 'now'), args[2], args[3]
  local index, path, message = int(args[4], 'piece index'), args[5], args[6]
  if id == nil or path == nil or message == nil then
    fail('fail_piece takes now, worker, task id, piece index, path and an error message')
  end
  require_job(keys)
  if not redis.call('ZSCORE', keys[K_LEASES], id) then
    return { 'dup' }
  end
  if redis.call('HSETNX', string.sub(keys[K_META], 1, -5) .. 'failed', id .. ':' .. index, now) == 1 then
    local attempts = inflight(keys, id)
    local n = redis.call('HINCRBY', keys[K_META], 'dead_records', 1)
    redis.call('XADD', keys[K_DEAD], n .. '-0', 'task', id, 'path', path, 'start', 0, 'end', 0,
      'failed_ms', now, 'worker', worker, 'attempts', attempts, 'error', message)
  end
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
  'speculated', 'events', 'partials', 'merges' }

-- Distinct words in the result so far: the sorted set's size, or what merges recorded.
local function distinct_words(keys)
  if redis.call('HGET', keys[K_META], 'cfg.aggregation') == 'workers' then
    return meta_int(keys, 'distinct')
  end
  return redis.call('ZCARD', keys[K_COUNTS])
end

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
    'distinct_words', distinct_words(keys),
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
redis.register_function('rc_commit_parts', commit_parts)
redis.register_function('rc_stage', stage)
redis.register_function('rc_merge_claim', merge_claim)
redis.register_function('rc_merge_commit', merge_commit)
redis.register_function('rc_fail', fail_task)
redis.register_function('rc_fail_piece', fail_piece)
redis.register_function('rc_event', event)
redis.register_function { function_name = 'rc_status', callback = status, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_version', callback = version, flags = { 'no-writes' } }
