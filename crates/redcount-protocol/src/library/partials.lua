-- partials.lua: the default `workers` aggregation: partition blobs staged and committed with a
-- batch's done records, then merged by workers under a lease.

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
  local lnow = lease_clock(keys, now, lease_ms)
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

