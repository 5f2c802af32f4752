-- jobs.lua: stopping a job, workers joining and leaving, the register of jobs, events, and
-- dropping a job's keys.

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

