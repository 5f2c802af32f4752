-- claim.lua: handing out tasks: expired leases first, then new tasks fairly, then speculative
-- copies of stragglers; renewing leases.

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
  local lnow = lease_clock(keys, now, lease_ms)

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
  local lnow = lease_clock(keys, now, lease_ms)
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

