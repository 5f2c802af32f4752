-- lifecycle.lua: a job made, its tasks enqueued (exactly once, holes refused) and sealed.

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

