-- failures.lua: an input that fails, a task deferred to another worker, a task split after a
-- charge, down to the one input that kills its workers.

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

