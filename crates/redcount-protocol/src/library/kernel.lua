#!lua name=redcount
-- redcount's coordination protocol: every state change of a job is one call of a function of this
-- library (this file and the nine library.rs joins after it, in order),
-- so each change is atomic on a single Redis, after a restore from a checkpoint, on replicas, and on a
-- Raft state machine that re-executes every call. docs/PROTOCOL.md describes every function. Rules:
--   * one clock, the coordinator's: `now` (ARGV[1] of every function) is `*`, this Redis's TIME, or a
--     pinned number of ms, which a Raft leader stamps on every entry (see `clock`); no TTLs, no
--     XAUTOCLAIM, no XPENDING IDLE; leases run on the lease clock (see `lease_clock`);
--   * no randomness and no replies that depend on hash iteration order;
--   * explicit stream ids everywhere (tasks `seq-0`, done `n-0`, dead `n-0`);
--   * validate every argument before the first write (Redis has no rollback).
-- KEYS are always the nine keys of one job, in the order of `JobKeys::all` in keys.rs.

local LIBRARY_VERSION = 37

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

