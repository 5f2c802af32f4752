-- register.lua: every function the library registers; `FUNCTIONS` in commands.rs is the same
-- table on the Rust side (a test checks them against each other).

redis.register_function('rc_create', create)
redis.register_function('rc_enqueue', enqueue)
redis.register_function('rc_seal', seal)
redis.register_function('rc_claim', claim)
redis.register_function('rc_renew', renew)
redis.register_function('rc_commit', commit)
redis.register_function('rc_commit_parts', commit_parts)
redis.register_function('rc_stage', stage)
redis.register_function('rc_merge_claim', merge_claim)
redis.register_function('rc_merge_commit', merge_commit)
redis.register_function('rc_fail', fail_task)
redis.register_function('rc_fail_piece', fail_piece)
redis.register_function('rc_defer', defer)
redis.register_function('rc_event', event)
redis.register_function('rc_stop', stop)
redis.register_function('rc_join', join)
redis.register_function('rc_leave', leave)
redis.register_function('rc_jobs', jobs)
redis.register_function('rc_split', split)
redis.register_function('rc_drop', drop)
redis.register_function { function_name = 'rc_status', callback = status, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_top', callback = top, flags = { 'no-writes' } }
redis.register_function { function_name = 'rc_version', callback = version, flags = { 'no-writes' } }
