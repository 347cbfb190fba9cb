//! The server-side scripts. Each touches one session key (plus, on a single node, the
//! user's index set), so every atomic operation is one round trip. `redis::Script` sends
//! EVALSHA and falls back to loading the script when the server does not have it cached.
//!
//! A session is a hash: `v` version, `r` the rest of the record as JSON (`store/hash.rs`;
//! older records repeat `v`, `la`, `i`, `a` in it), `la` last activity, `i` idle
//! deadline, `a` absolute deadline, `x` expiry (the earlier deadline), `u` user. Times are
//! Unix milliseconds; an empty string means "none". The key expires natively at `x`.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ToRedisArgs};

/// A script call built straight into its `EVALSHA` command. redis-rs's `ScriptInvocation`
/// keeps every key and argument in a vector of its own, then copies them all into the
/// command it sends and frees them: about 3,000 instructions and ten allocations on each
/// write. The fallback is the same: a server without the script in its cache
/// (`NOSCRIPT`) gets it loaded, and the call sent again.
pub(crate) struct Call {
    script: &'static Script,
    command: Cmd,
}

impl Call {
    /// A call of `script` on `keys`; arguments follow with [`arg`](Self::arg).
    pub(crate) fn new(script: &'static Script, keys: &[&str]) -> Self {
        // The session key, a few timestamps and the record: one allocation for the lot
        // in the common case.
        let mut command = Cmd::with_capacity(12, 512);
        command
            .arg("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys);
        Self { script, command }
    }

    /// Appends an argument (`ARGV[n]`).
    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.command.arg(arg);
        self
    }

    /// Runs the script, loading it first if the server has not cached it.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        connection: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self.command.query_async(connection).await {
            Err(error) if error.kind() == ErrorKind::NoScriptError => {
                self.script.load_async(connection).await?;
                self.command.query_async(connection).await
            }
            outcome => outcome,
        }
    }
}

/// Shared Lua: is the session key live at `now`, and the earlier of two deadlines.
const HELPERS: &str = r"
-- A deadline that is not a number (a damaged hash) counts as dead.
local function live_x(x, now)
  if not x then return false end
  if x == '' then return true end
  local n = tonumber(x)
  return n ~= nil and n > tonumber(now)
end
-- An index member names a session key only if it is a store key's 64 hex digits.
local function is_member(m)
  return #m == 64 and not m:find('[^0-9a-f]')
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
";

fn script(body: &str) -> Script {
    Script::new(&format!("{HELPERS}{INDEX_ADD_FN}{body}"))
}

/// Shared Lua: adds a member to a user's index set.
const INDEX_ADD_FN: &str = r"
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

/// KEYS: session [, user set]. ARGV: now, expected version, new version, r, la, i, u.
/// Returns 1 on success, 2 on success when the write changed the user, 0 on a version
/// conflict, -1 if the session is gone. The absolute deadline stays as inserted.
///
/// This runs on every write, so each step is priced in Redis CPU (instructions per call,
/// callgrind on Redis 7.0; `examples/update_cost.rs` runs the writes): a Lua table
/// returned is about 4,500 (Redis probes it for error, status and RESP3 fields), a
/// `tonumber` about 2,000 (two `strtod`s), a `redis.call` 5,000 to 10,000, an argument
/// about 1,000 and a ninth one 1,500 more (the `ARGV` table grows from 8 slots to 16), a
/// helper function about 400 (a closure built on every call). Hence:
/// - the caller computes the new version; deadlines of equal length compare as strings;
/// - the reply is one integer, and the helpers are written inline;
/// - the index entry is added only when the user changes: a live session of a user is
///   always in that user's set already (insert, rename and earlier updates put it there,
///   listings prune only dead members, revocation deletes the session with its member),
///   and the set outlives the session's absolute deadline, which an update never moves.
///   The member is the key's 64 hex digits, so it costs no argument;
/// - `u` is rewritten and the key's expiry moved only when they change.
pub static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{INDEX_ADD_FN}
local h = redis.call('HMGET', KEYS[1], 'v', 'x', 'a', 'u')
local x = h[2]
if not x then return -1 end
-- Two timestamps of as many digits compare as strings, which spares a tonumber() (two
-- strtod()s) per operand on every write; Unix milliseconds all have 13 digits from 2001 to
-- 2286. A deadline that is not a number (a damaged hash) still counts as dead.
if x ~= '' then
  local n = tonumber(x)
  if n == nil then return -1 end
  local now = ARGV[1]
  if #x == #now then
    if x <= now then return -1 end
  elseif n <= tonumber(now) then return -1 end
end
if h[1] ~= ARGV[2] then return 0 end
-- The earlier deadline, compared as above.
local a, i = h[3], ARGV[6]
x = i
if i == '' then x = a
elseif a ~= '' then
  if #a == #i then
    if a < i then x = a end
  elseif tonumber(a) < tonumber(i) then x = a end
end
local changed = h[4] ~= ARGV[7]
if changed then
  redis.call('HSET', KEYS[1], 'v', ARGV[3], 'r', ARGV[4], 'la', ARGV[5], 'i', ARGV[6], 'x', x, 'u', ARGV[7])
  if KEYS[2] then index_add(KEYS[2], KEYS[1]:sub(-65, -2), a) end
else
  redis.call('HSET', KEYS[1], 'v', ARGV[3], 'r', ARGV[4], 'la', ARGV[5], 'i', ARGV[6], 'x', x)
end
if x ~= h[2] then
  if x == '' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIREAT', KEYS[1], x) end
end
if changed then return 2 end
return 1
"
    ))
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

/// KEYS: session. ARGV: expected version, last activity and idle deadline. Deletes the
/// session only as it was read: at that version, and untouched since. A touch moves the
/// activity and the idle deadline, not the version, and the activity alone is not enough:
/// it is kept to the millisecond, and a touch in the millisecond the session was written
/// leaves it as it was while moving the deadline. Returns 1, 0 if it moved, -1 if the
/// session is gone.
pub static DELETE_AT_VERSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'v', 'la', 'i')
if not h[1] then return -1 end
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] or h[3] ~= ARGV[3] then return 0 end
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

/// KEYS: session. ARGV: now, user. Deletes the session if it is the user's (live,
/// expired or damaged alike). Returns 1 if it deleted a live session of the user.
pub static DELETE_IF_USER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local h = redis.call('HMGET', KEYS[1], 'x', 'u', 'r')
if h[2] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if h[3] and live_x(h[1], ARGV[1]) then return 1 end
return 0
",
    )
});

/// KEYS: user set. ARGV: member, absolute deadline. Adds a member (cluster mode, where the
/// set is in another slot than the session).
pub static INDEX_ADD: LazyLock<Script> =
    LazyLock::new(|| script("index_add(KEYS[1], ARGV[1], ARGV[2])\nreturn 1\n"));

/// Single node only. One batch of "revoke all of a user's sessions (but one)". KEYS: user
/// set. ARGV: now, user, key prefix, batch size, kept member (or '').
///
/// Takes up to a batch of members out of the index and deletes each that is the user's
/// session (live, expired or damaged alike); members naming anything else are simply
/// dropped. Progress is kept whatever happens to later batches. A rename moves its index
/// entry in one script too, so a session renamed between batches is found by a later one.
/// Returns {live sessions deleted, members left besides the kept one}.
pub static REVOKE_BATCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local keep = ARGV[5] ~= '' and redis.call('SREM', KEYS[1], ARGV[5]) == 1
local at = redis.call('PEXPIRETIME', KEYS[1])
local deleted = 0
for _, m in ipairs(redis.call('SPOP', KEYS[1], ARGV[4])) do
  if is_member(m) then
    local key = ARGV[3] .. 's:{' .. m .. '}'
    local h = redis.call('HMGET', key, 'x', 'u', 'r')
    if h[2] == ARGV[2] then
      if h[3] and live_x(h[1], ARGV[1]) then deleted = deleted + 1 end
      redis.call('DEL', key)
    end
  end
end
local left = redis.call('SCARD', KEYS[1])
if keep then
  redis.call('SADD', KEYS[1], ARGV[5])
  if at > 0 then redis.call('PEXPIREAT', KEYS[1], at) end
end
return {deleted, left}
",
    )
});

/// Single node only. One batch of a user's listing. KEYS: user set. ARGV: now, user, key
/// prefix, SSCAN cursor, batch size.
///
/// Returns the next cursor, then six values per live session of the user: member, `v`,
/// `r`, `la`, `i`, `a`. Members naming no live session of the user are removed from the
/// index in the same step, so nobody can re-add one in between; a session of the user
/// that can never be live again (expired, damaged deadline) is deleted with its member.
pub static LIST_BATCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local scan = redis.call('SSCAN', KEYS[1], ARGV[4], 'COUNT', ARGV[5])
local out = {scan[1]}
local dead = {}
for _, m in ipairs(scan[2]) do
  local h = false
  local key = ARGV[3] .. 's:{' .. m .. '}'
  if is_member(m) then
    h = redis.call('HMGET', key, 'v', 'r', 'la', 'i', 'a', 'x', 'u')
  end
  if h and h[7] == ARGV[2] and live_x(h[6], ARGV[1]) then
    table.insert(out, m)
    for j = 1, 5 do table.insert(out, h[j]) end
  else
    -- The user's session, but expired or with a damaged deadline: it can never be live
    -- again, and once out of the index nothing else would find it.
    if h and h[7] == ARGV[2] then redis.call('DEL', key) end
    table.insert(dead, m)
  end
end
if #dead > 0 then redis.call('SREM', KEYS[1], unpack(dead)) end
return out
",
    )
});
