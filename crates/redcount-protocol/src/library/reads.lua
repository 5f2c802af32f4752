-- reads.lua: the read-only functions: top words, status, version.

-- The fields `status` replies with, in this order, before those it computes (`STATUS_FIELDS` in
-- status.rs is the same list).
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

