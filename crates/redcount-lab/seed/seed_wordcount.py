"""The course's lab design (labs 1-2), for `redcount bench --seed` to compare against: a client XADDs
every file path to a stream; Python workers read one path at a time through a consumer group, count
its words with bytes.split(), and commit each file with one FCALL that acks it and ZINCRBYs every
distinct word into one sorted set; a worker takes over files idle for 30 s (XAUTOCLAIM) and exits
when nothing is left undelivered or pending.

    seed_wordcount.py URL client PATH...   load the function, create the stream, add the paths
    seed_wordcount.py URL worker NAME      count until the stream is drained

The URL comes from the environment (SEED_REDIS_URL), never the command line.
"""

import collections
import os
import sys
import time

import redis

STREAM, GROUP, COUNTS = "seed:files", "workers", "seed:counts"

LIBRARY = """#!lua name=seed
redis.register_function('seed_commit', function(keys, args)
  if redis.call('XACK', keys[1], 'workers', args[1]) == 0 then
    return 0
  end
  for i = 2, #args, 2 do
    redis.call('ZINCRBY', keys[2], args[i + 1], args[i])
  end
  return 1
end)
"""


def client(r, paths):
    r.function_load(LIBRARY, replace=True)
    r.delete(STREAM, COUNTS)
    r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    pipe = r.pipeline(transaction=False)
    for path in paths:
        pipe.xadd(STREAM, {"path": path})
    pipe.execute()


def commit(r, entry_id, path):
    with open(path, "rb") as f:
        counts = collections.Counter(f.read().split())
    args = [entry_id]
    for word, n in counts.items():
        args += [word, n]
    r.fcall("seed_commit", 2, STREAM, COUNTS, *args)


def worker(r, name):
    while True:
        got = r.xreadgroup(GROUP, name, {STREAM: ">"}, count=1)
        entries = got[0][1] if got else []
        if not entries:
            entries = r.xautoclaim(STREAM, GROUP, name, min_idle_time=30_000, count=1)[1]
        if not entries:
            if r.xpending(STREAM, GROUP)["pending"] == 0:
                return
            time.sleep(0.01)
            continue
        for entry_id, fields in entries:
            commit(r, entry_id, fields[b"path"])


def main():
    r = redis.Redis.from_url(os.environ["SEED_REDIS_URL"])
    if sys.argv[1] == "client":
        client(r, sys.argv[2:])
    else:
        worker(r, sys.argv[2])


if __name__ == "__main__":
    main()
