-- leases.lua: the lease clock, a task's inflight record (holder, attempts, charges), retiring,
-- burying and delivering a task.

-- The lease clock: the coordinator's clock with every quiet stretch taken out. When no call of the job
-- was served for longer than a third of its shortest lease (a failover, a Redis restart, a long busy
-- script: workers could not renew), the stretch beyond that third pauses every lease, as Chubby's new
-- master extends its sessions: leases run down only while the coordinator serves, so a failover alone
-- never takes a task from a live worker, while a worker that really died still loses its tasks one
-- lease later. The shortest lease is the job's, or a shorter one a worker asked for (`granting`).
-- Workers renew every quarter of a lease and poll at least as often when idle, so a job with a live
-- worker is never quiet that long. Deterministic: it derives from `now` and the job's state only.
local function lease_clock(keys, now, granting)
  local m = redis.call('HMGET', keys[K_META], 'heard_ms', 'paused_ms', 'cfg.lease_ms', 'min_lease_ms')
  local heard, paused = tonumber(m[1] or now), tonumber(m[2] or '0')
  local lease, shortest = tonumber(m[3] or '0'), tonumber(m[4] or '0')
  if shortest > 0 and (lease == 0 or shortest < lease) then
    lease = shortest
  end
  local quiet = math.max(math.floor(lease / 3), 1)
  if now - heard > quiet then
    paused = paused + now - heard - quiet
    redis.call('HSET', keys[K_META], 'paused_ms', paused)
  end
  if now > heard then
    redis.call('HSET', keys[K_META], 'heard_ms', now)
  end
  -- A call that grants a lease (claim, renew, merge_claim) passes its length: the shortest one
  -- granted so far is kept, read above with the rest, so a worker's `--lease` shorter than its
  -- job's pauses the clock too from the next call on.
  if granting and (shortest == 0 or granting < shortest) then
    redis.call('HSET', keys[K_META], 'min_lease_ms', granting)
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

