//! The Lua scripts that make each write a compare-and-set on the bytes read, index entry
//! included, in one step on the server.

/// `body` after the Lua function `index_add(set, member, ttl)`, which adds a member to a
/// user's index set and keeps the set for as long as its longest-lived member (`ttl` in
/// ms, `'0'` for none): it expires with the latest one, so a user's sessions all gone
/// take their set with them instead of leaving it in Redis for good. A set that has no
/// expiry (an earlier version's, or one a session without a TTL was added to) keeps none.
macro_rules! indexing {
    ($body:literal) => {
        concat!(
            r"
local function index_add(set, member, ttl)
  local fresh = redis.call('EXISTS', set) == 0
  redis.call('SADD', set, member)
  if ttl == '0' then
    redis.call('PERSIST', set)
  else
    local left = redis.call('PTTL', set)
    if fresh or (left >= 0 and left < tonumber(ttl)) then redis.call('PEXPIRE', set, ttl) end
  end
end
",
            $body
        )
    };
}

/// A compare-and-set on the exact bytes read. KEYS: session. ARGV: SHA-1 of the value read,
/// new value ('' keeps the value and only moves the TTL), TTL in ms ('0': none), index
/// member, old user's set (''), new user's set (''). Returns 2 when written, 1 when the
/// value changed since it was read, 0 when it is gone.
pub(super) const CAS: &str = indexing!(
    r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if redis.sha1hex(current) ~= ARGV[1] then return 1 end
if ARGV[2] ~= '' then
  if ARGV[3] == '0' then
    redis.call('SET', KEYS[1], ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
elseif ARGV[3] == '0' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[5] ~= '' and ARGV[5] ~= ARGV[6] then redis.call('SREM', ARGV[5], ARGV[4]) end
if ARGV[6] ~= '' then index_add(ARGV[6], ARGV[4], ARGV[3]) end
return 2
"
);

/// KEYS: session. ARGV: value, TTL in ms ('0': none), member, user's set ('').
/// Returns 1 when created, 0 when the key exists.
pub(super) const INSERT: &str = indexing!(
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if ARGV[4] ~= '' then index_add(ARGV[4], ARGV[3], ARGV[2]) end
return 1
"
);

/// KEYS: old, new. ARGV: SHA-1 of the old value read, old member, new member, user's set
/// (''). Returns 2 when renamed, 1 when the old value changed since it was read, 3 when the
/// new key is taken, 0 when the old one is gone.
pub(super) const RENAME: &str = indexing!(
    r"
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if redis.sha1hex(value) ~= ARGV[1] then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
local ttl = redis.call('PTTL', KEYS[1])
-- 0: the key is in its last millisecond, which a script still reads; copied without a
-- TTL, it would live for good.
if ttl == 0 then return 0 end
if ttl > 0 then
  redis.call('SET', KEYS[2], value, 'PX', ttl)
else
  redis.call('SET', KEYS[2], value)
end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then
  redis.call('SREM', ARGV[4], ARGV[2])
  index_add(ARGV[4], ARGV[3], ttl > 0 and tostring(ttl) or '0')
end
return 2
"
);

/// KEYS: session. ARGV: member, user's set (''). Returns the number of keys deleted.
pub(super) const DELETE: &str = r"
local n = redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('SREM', ARGV[2], ARGV[1]) end
return n
";

/// One batch of index upkeep. KEYS: user's set. ARGV: key prefix, then triples of member,
/// SHA-1 of the value read ('' when there was none), and whether to delete the session and
/// count it ('1'), delete it uncounted ('2': dead or unreadable) or only drop the member
/// ('0'), each only if the value is still the one read.
/// Returns {sessions deleted, members whose value changed or went since it was read}.
pub(super) const PRUNE: &str = r"
local deleted, changed = 0, 0
for j = 2, #ARGV, 3 do
  local key = ARGV[1] .. ARGV[j]
  local current = redis.call('GET', key)
  if not current then
    redis.call('SREM', KEYS[1], ARGV[j])
    if ARGV[j + 1] ~= '' then changed = changed + 1 end
  elseif redis.sha1hex(current) == ARGV[j + 1] then
    if ARGV[j + 2] ~= '0' then redis.call('DEL', key) end
    if ARGV[j + 2] == '1' then deleted = deleted + 1 end
    redis.call('SREM', KEYS[1], ARGV[j])
  else
    changed = changed + 1
  end
end
return {deleted, changed}
";
