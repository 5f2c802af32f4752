-- commit.lua: the `redis` aggregation's commit: a batch's words added with ZINCRBY, at most once
-- per task, with its done record.

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

