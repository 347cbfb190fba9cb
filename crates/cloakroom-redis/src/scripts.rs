//! The server-side scripts. Each touches one session key (plus, on a single node, the
//! user's index set), so every atomic operation is one round trip. `redis::Script` sends
//! EVALSHA and falls back to loading the script when the server does not have it cached.
//!
//! A session is a hash: `v` version, `r` the record as JSON, `la` last activity, `i` idle
//! deadline, `a` absolute deadline, `x` expiry (the earlier deadline), `u` user. Times are
//! Unix milliseconds; an empty string means "none". The key expires natively at `x`.

use std::sync::LazyLock;

use redis::Script;

/// Shared Lua: is the session key live at `now`, and the earlier of two deadlines.
const HELPERS: &str = r"
local function live_x(x, now)
  return x and (x == '' or tonumber(x) > tonumber(now))
end
local function earliest(i, a)
  if i == '' then return a end
  if a == '' then return i end
  if tonumber(i) < tonumber(a) then return i end
  return a
end
local function expire(key, x)
  if x == '' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, x) end
end
-- Adds a member to a user's index set, which must outlive its latest absolute deadline
-- (no member can live past its own): the set expires at the latest one, or never.
local function index_add(set, member, absolute)
  local fresh = redis.call('EXISTS', set) == 0
  redis.call('SADD', set, member)
  if absolute == '' or absolute == false then
    redis.call('PERSIST', set)
  else
    local at = redis.call('PEXPIRETIME', set)
    if fresh or (at >= 0 and at < tonumber(absolute)) then redis.call('PEXPIREAT', set, absolute) end
  end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{HELPERS}{body}"))
}

/// KEYS: session [, user set]. ARGV: now, v, r, la, i, a, x, u, member.
/// Returns 1 if created, 0 if a live session has the key.
pub static INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local x = redis.call('HGET', KEYS[1], 'x')
if live_x(x, ARGV[1]) then return 0 end
if x then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'r', ARGV[3], 'la', ARGV[4], 'i', ARGV[5], 'a', ARGV[6], 'x', ARGV[7], 'u', ARGV[8])
expire(KEYS[1], ARGV[7])
if KEYS[2] then index_add(KEYS[2], ARGV[9], ARGV[6]) end
return 1
",
    )
});

/// KEYS: session [, user set]. ARGV: now, expected version, r, la, i, u, member.
/// Returns {1, previous user} on success, {0, ''} on a version conflict, {-1, ''} if the
/// session is gone. The absolute deadline stays as inserted.
pub static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local h = redis.call('HMGET', KEYS[1], 'v', 'x', 'a', 'u')
if not live_x(h[2], ARGV[1]) then return {-1, ''} end
if h[1] ~= ARGV[2] then return {0, ''} end
local x = earliest(ARGV[5], h[3])
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[2]) + 1), 'r', ARGV[3], 'la', ARGV[4], 'i', ARGV[5], 'x', x, 'u', ARGV[6])
expire(KEYS[1], x)
if KEYS[2] then index_add(KEYS[2], ARGV[7], h[3]) end
return {1, h[4] or ''}
",
    )
});

/// KEYS: session. ARGV: now, la, i. Returns 1, or 0 if the session is gone.
pub static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local h = redis.call('HMGET', KEYS[1], 'x', 'a')
if not live_x(h[1], ARGV[1]) then return 0 end
local x = earliest(ARGV[3], h[2])
redis.call('HSET', KEYS[1], 'la', ARGV[2], 'i', ARGV[3], 'x', x)
expire(KEYS[1], x)
return 1
",
    )
});

/// Single node only. KEYS: old, new. ARGV: now, key prefix, new member, old member.
/// Returns 1, 0 if the old session is gone, 2 if the new key is taken.
pub static RENAME: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if not live_x(redis.call('HGET', KEYS[1], 'x'), ARGV[1]) then return 0 end
if live_x(redis.call('HGET', KEYS[2], 'x'), ARGV[1]) then return 2 end
redis.call('RENAME', KEYS[1], KEYS[2])
local h = redis.call('HMGET', KEYS[2], 'u', 'a')
if h[1] and h[1] ~= '' then
  local set = ARGV[2] .. 'u:{' .. h[1] .. '}'
  redis.call('SREM', set, ARGV[4])
  index_add(set, ARGV[3], h[2])
end
return 1
",
    )
});

/// KEYS: session. ARGV: expected version. Deletes the session only at that version.
/// Returns 1, 0 if the version moved, -1 if the session is gone.
pub static DELETE_AT_VERSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// KEYS: session. ARGV: key prefix, member, single-node flag. Deletes the session and, on
/// a single node, its index entry. Returns the number of keys deleted.
pub static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local u = redis.call('HGET', KEYS[1], 'u')
local n = redis.call('DEL', KEYS[1])
if ARGV[3] == '1' and u and u ~= '' then redis.call('SREM', ARGV[1] .. 'u:{' .. u .. '}', ARGV[2]) end
return n
",
    )
});

/// KEYS: session. ARGV: now, user. Deletes the session if it is live and the user's.
/// Returns 1 if it deleted a live session of the user.
pub static DELETE_IF_USER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local h = redis.call('HMGET', KEYS[1], 'x', 'u')
if not live_x(h[1], ARGV[1]) or h[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// KEYS: user set. ARGV: member, absolute deadline. Adds a member (cluster mode, where the
/// set is in another slot than the session).
pub static INDEX_ADD: LazyLock<Script> =
    LazyLock::new(|| script("index_add(KEYS[1], ARGV[1], ARGV[2])\nreturn 1\n"));
