//! The server-side Lua scripts. Every operation that must be atomic is one
//! of these, run with EVALSHA (falling back to loading the script when the
//! server does not know it yet).
//!
//! Each script touches the keys of **one hash slot** only: a family script
//! works inside `{rXX}` (the session's group), a ledger script inside
//! `{s:<sandbox>}`. Key names that a script derives itself (the record and
//! the retired-token index of the family a pointer names) carry the same
//! hash tag as the declared keys, so they live in the declared slot.
//!
//! Numbers are written with `string.format('%d')`: Lua numbers are doubles,
//! exact for millisecond timestamps, but their default text form is not.
//!
//! Record hash fields: `sb` sandbox, `cur` index digest of the current token
//! or key, `v` sealed value, `ver` version, `ct` created, `exp` idle deadline
//! (never after `abs`), `abs` absolute deadline, `ttl` idle TTL, `mt` when
//! the current token was minted, `sub` subject digest, `px` the physical
//! expiry set on every key of the family, `ctok`/`gu` the sealed current
//! token and the end of the last open grace window, `rn` how many retired
//! tokens the family's retired-token index holds, `rp` how many its last
//! pruning kept.
//!
//! The rotation path is kept to five commands inside the script (GET the
//! pointer, HMGET the record, SET the successor's pointer, ZADD the retired
//! token, HSET the record), plus a pruning step amortized over many
//! rotations; everything else (grace hits, refreshes that move the physical
//! expiry, reuse) is off that path.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the family scripts.
const PRELUDE: &str = r#"
local function fmt(x) return string.format('%d', x) end
local function tok(base, d) return base .. 't:' .. d end
-- The physical expiry of a family whose idle deadline is `exp`: later than
-- the logical one by at least `slack`, and by half a TTL so that a session
-- refreshed on every request moves it only every half TTL.
local function phys(exp, abs, ttl, slack) return math.min(abs, exp + math.floor(ttl / 2)) + slack end
-- Deletes the pointers of digests `ds`, a few hundred per DEL (one call
-- each instead of one per pointer; the batch bounds Lua's stack use).
local function dels(base, ds)
  local ks = {}
  for i = 1, #ds do
    ks[#ks + 1] = tok(base, ds[i])
    if #ks == 512 then redis.call('DEL', unpack(ks)); ks = {} end
  end
  if #ks > 0 then redis.call('DEL', unpack(ks)) end
end
-- Deletes a family: its record, every pointer and the retired-token index.
local function drop(base, sid, cur)
  local xk = base .. 'x:' .. sid
  dels(base, redis.call('ZRANGE', xk, 0, -1))
  if cur then redis.call('DEL', tok(base, cur)) end
  redis.call('DEL', base .. 'f:' .. sid, xk)
end
-- Moves the physical expiry of every key of a family to `px`.
local function repx(base, sid, cur, px)
  local rk = base .. 'f:' .. sid
  local xk = base .. 'x:' .. sid
  local xs = redis.call('ZRANGE', xk, 0, -1)
  for i = 1, #xs do redis.call('PEXPIREAT', tok(base, xs[i]), fmt(px)) end
  redis.call('PEXPIREAT', tok(base, cur), fmt(px))
  redis.call('PEXPIREAT', xk, fmt(px))
  redis.call('HSET', rk, 'px', fmt(px))
  redis.call('PEXPIREAT', rk, fmt(px))
end
-- Writes a new family under pointer `ptr`; returns its idle deadline.
local function create(base, ptr, sid, sandbox, v, now, ttl, abs, sub, slack)
  local exp = math.min(now + ttl, abs)
  local px = phys(exp, abs, ttl, slack)
  local rk = base .. 'f:' .. sid
  redis.call('HSET', rk, 'sb', sandbox, 'cur', string.sub(ptr, #base + 3), 'v', v, 'ver', '1',
    'ct', fmt(now), 'exp', fmt(exp), 'abs', fmt(abs), 'ttl', fmt(ttl), 'mt', fmt(now), 'px', fmt(px))
  if sub ~= '' then redis.call('HSET', rk, 'sub', sub) end
  redis.call('PEXPIREAT', rk, fmt(px))
  redis.call('SET', ptr, sid, 'PXAT', fmt(px))
  return exp
end
"#;

/// Uses an address (token or caller key).
///
/// KEYS: the `n` pointer candidates (the address's digest under each secret
/// of the keyring, current first), then the successor's pointer when the
/// caller may rotate. ARGV: now, sandbox, n, base, mode, reuse revokes
/// (`1`/`0`), slack, rotate (`0` never, `1` always, `2` older than), age,
/// grace, refresh (`0` no, `1` idle, `2` to a TTL), TTL, sealed successor,
/// retired window.
///
/// Modes: `r` resolve, `t` touch, `w` read for a write, `e` exists, `d`
/// delete, `k` which family (no replay handling).
///
/// Answers `{code, ...}`: 0 miss; 1 current, 3 grace (`e`: 4 retired); 2
/// rotated; 5 replay refused; 6 replay, family revoked; 7 expired (family
/// deleted); 8 deleted; 9 successor pointer taken (retry). Codes 1-3 carry
/// `sid, sub, ver, ct, exp, abs, ttl, v, ctok, cur, old exp`; 6-8 carry
/// `sid, sub`.
const ACCESS: &str = r#"
local now = tonumber(ARGV[1])
local sandbox = ARGV[2]
local n = tonumber(ARGV[3])
local base = ARGV[4]
local mode = ARGV[5]
local slack = tonumber(ARGV[7])
local sid, ptr
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v then sid = v; ptr = KEYS[i]; break end
end
if not sid then return {0} end
local rk = base .. 'f:' .. sid
local xk = base .. 'x:' .. sid
-- `ctok` is not read here: only a grace hit needs it (one HGET then).
local r = redis.call('HMGET', rk, 'sb', 'cur', 'ver', 'ct', 'exp', 'abs', 'ttl', 'mt', 'sub', 'px', 'gu', 'v', 'rn', 'rp')
if not r[1] then redis.call('DEL', ptr); return {0} end
if r[1] ~= sandbox then return {0} end
local cur = r[2]
local sub = r[9] or ''
local exp = tonumber(r[5])
if now >= exp then drop(base, sid, cur); return {7, sid, sub} end
local d = string.sub(ptr, #base + 3)
local state = 1
if d ~= cur then
  local s = redis.call('ZSCORE', xk, d)
  if not s then redis.call('DEL', ptr); return {0} end
  if now < tonumber(s) then state = 3 else state = 4 end
end
if mode == 'e' then return {state} end
if mode == 'd' then drop(base, sid, cur); return {8, sid, sub} end
if mode == 'k' then
  if state == 4 then return {0} end
  return {state, sid}
end
if state == 4 then
  if ARGV[6] == '1' then drop(base, sid, cur); return {6, sid, sub} end
  return {5}
end
local abs = tonumber(r[6])
local ttl = tonumber(r[7])
local px = tonumber(r[10])
local gu = tonumber(r[11] or '0')
local code = state
local ctok = ''
-- Field updates of the record, written with one HSET at the end.
local upd = {}
local drop_ctok = false
if mode == 'r' and state == 1 then
  local rot = ARGV[8]
  if rot == '1' or (rot == '2' and now - tonumber(r[8]) >= tonumber(ARGV[9])) then
    local nk = KEYS[n + 1]
    if not redis.call('SET', nk, sid, 'NX', 'PXAT', fmt(px)) then return {9} end
    local grace_until = now + tonumber(ARGV[10])
    redis.call('ZADD', xk, fmt(grace_until), d)
    -- `rn` counts the retired tokens, saving a ZCARD on every rotation.
    local card = tonumber(r[13] or '0') + 1
    if card == 1 then redis.call('PEXPIREAT', xk, fmt(px)) end
    if grace_until > gu then gu = grace_until end
    cur = string.sub(nk, #base + 3)
    upd[#upd + 1] = 'cur'; upd[#upd + 1] = cur
    upd[#upd + 1] = 'mt'; upd[#upd + 1] = ARGV[1]
    if gu > now then
      upd[#upd + 1] = 'ctok'; upd[#upd + 1] = ARGV[13]
      upd[#upd + 1] = 'gu'; upd[#upd + 1] = fmt(gu)
    else
      drop_ctok = true
    end
    -- Forget the oldest retired tokens beyond the window, never one still
    -- in its grace window (up to a hard cap of 1024). Pruned in batches:
    -- between `window` and twice as many are remembered. `rp` is how many
    -- the last pruning kept (tokens still in grace): the next one waits
    -- until twice as many are retired, so a session rotated faster than its
    -- grace period prunes once per `rp` rotations, not on every one.
    local window = tonumber(ARGV[14])
    local floor = math.max(window, tonumber(r[14] or '0'))
    if card >= math.min(2 * floor, 1025) then
      local old = redis.call('ZRANGEBYSCORE', xk, '-inf', ARGV[1], 'LIMIT', 0, card - window)
      if #old > 0 then
        dels(base, old)
        redis.call('ZREM', xk, unpack(old))
      end
      card = card - #old
      if card > 1024 then
        local over = redis.call('ZRANGE', xk, 0, card - 1025)
        dels(base, over)
        redis.call('ZREM', xk, unpack(over))
        card = 1024
      end
      upd[#upd + 1] = 'rp'; upd[#upd + 1] = fmt(card)
    end
    upd[#upd + 1] = 'rn'; upd[#upd + 1] = fmt(card)
    code = 2
  elseif gu > 0 and gu <= now then
    -- No grace window needs the sealed current token any more.
    drop_ctok = true
  end
elseif mode == 'r' and state == 3 then
  ctok = redis.call('HGET', rk, 'ctok') or ''
end
local old_exp = exp
local rf = ARGV[11]
local moved = false
if (mode == 'r' or mode == 't') and rf ~= '0' then
  if rf == '2' then
    ttl = tonumber(ARGV[12])
    upd[#upd + 1] = 'ttl'; upd[#upd + 1] = fmt(ttl)
  end
  exp = math.min(now + ttl, abs)
  upd[#upd + 1] = 'exp'; upd[#upd + 1] = fmt(exp)
  moved = exp + slack > px
end
if #upd > 0 then redis.call('HSET', rk, unpack(upd)) end
if drop_ctok then redis.call('HDEL', rk, 'ctok', 'gu') end
if moved then repx(base, sid, cur, phys(exp, abs, ttl, slack)) end
local v = ''
if mode ~= 't' then v = r[12] end
return {code, sid, sub, tonumber(r[3]), tonumber(r[4]), exp, abs, ttl, v, ctok, cur, old_exp}
"#;

/// Creates a family.
///
/// KEYS: pointer, record. ARGV: now, sandbox, base, sid, sealed value, TTL,
/// absolute deadline, subject digest (or empty), slack.
///
/// Answers `{0, exp}` created, `{1}` the address is taken, `{2}` the id is
/// taken.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
local exp = create(ARGV[3], KEYS[1], ARGV[4], ARGV[2], ARGV[5], tonumber(ARGV[1]), tonumber(ARGV[6]),
  tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9]))
return {0, exp}
"#;

/// Replaces the value of a family if its version is the expected one.
///
/// KEYS: record. ARGV: now, sandbox, base, sid, expected version, sealed
/// value, mode (`u` update only the value, `s` set: also restart the idle
/// TTL, cut the absolute deadline, change the subject), TTL, absolute
/// deadline, subject digest (or empty), slack.
///
/// Answers `{0}` gone, `{1, version}` conflict, `{2, version, ct, exp, abs,
/// ttl, old sub, sub, old exp}` written.
const WRITE: &str = r#"
local now = tonumber(ARGV[1])
local base = ARGV[3]
local sid = ARGV[4]
local slack = tonumber(ARGV[11])
local rk = KEYS[1]
local r = redis.call('HMGET', rk, 'sb', 'ver', 'ct', 'exp', 'abs', 'ttl', 'px', 'sub', 'cur')
if not r[1] or r[1] ~= ARGV[2] or now >= tonumber(r[4]) then return {0} end
local ver = tonumber(r[2])
if ver ~= tonumber(ARGV[5]) then return {1, ver} end
ver = ver + 1
local exp = tonumber(r[4])
local abs = tonumber(r[5])
local ttl = tonumber(r[6])
local old_exp = exp
local old_sub = r[8] or ''
local sub = old_sub
redis.call('HSET', rk, 'v', ARGV[6], 'ver', fmt(ver))
if ARGV[7] == 's' then
  ttl = tonumber(ARGV[8])
  abs = math.min(abs, tonumber(ARGV[9]))
  exp = math.min(now + ttl, abs)
  redis.call('HSET', rk, 'ttl', fmt(ttl), 'abs', fmt(abs), 'exp', fmt(exp))
  if ARGV[10] ~= '' then
    sub = ARGV[10]
    redis.call('HSET', rk, 'sub', sub)
  end
  if exp + slack > tonumber(r[7]) then repx(base, sid, r[9], phys(exp, abs, ttl, slack)) end
end
return {2, ver, tonumber(r[3]), exp, abs, ttl, old_sub, sub, old_exp}
"#;

/// Moves a family to another sandbox: deletes the old family and creates the
/// new one in the same group, in one step.
///
/// KEYS: old record, new pointer, new record. ARGV: now, from, base, old
/// sid, expected version, to, new sid, sealed value, TTL, absolute deadline,
/// subject digest (or empty: keep the old one), slack.
///
/// Answers `{0}` gone, `{1}` the value changed since it was read, `{9}` the
/// new pointer or id is taken, `{2, old sub, sub, exp}` moved.
const MIGRATE: &str = r#"
local now = tonumber(ARGV[1])
local base = ARGV[3]
local r = redis.call('HMGET', KEYS[1], 'sb', 'ver', 'exp', 'sub', 'cur')
if not r[1] or r[1] ~= ARGV[2] or now >= tonumber(r[3]) then return {0} end
if tonumber(r[2]) ~= tonumber(ARGV[5]) then return {1} end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return {9} end
local old_sub = r[4] or ''
local sub = ARGV[11]
if sub == '' then sub = old_sub end
drop(base, ARGV[4], r[5])
local exp = create(base, KEYS[2], ARGV[7], ARGV[6], ARGV[8], now, tonumber(ARGV[9]), tonumber(ARGV[10]), sub,
  tonumber(ARGV[12]))
return {2, old_sub, sub, exp}
"#;

/// Checks or removes a family by id (sweep, eviction, revocation,
/// rollback).
///
/// KEYS: record. ARGV: now, sandbox, base, sid, mode, argument. Modes: `s`
/// sweep (delete if expired); `e` evict (delete if expired or if its idle
/// deadline is at most the argument); `r` revoke (delete if the subject
/// digest is the argument, or any when it is empty); `z` roll back a
/// creation (delete if still at version 1).
///
/// Answers `{0}` gone, `{1, exp}` live and kept, `{7, sub}` expired and
/// deleted, `{8, sub}` revoked, `{10, sub}` evicted.
const FAMILY: &str = r#"
local now = tonumber(ARGV[1])
local base = ARGV[3]
local sid = ARGV[4]
local mode = ARGV[5]
local r = redis.call('HMGET', KEYS[1], 'sb', 'sub', 'exp', 'cur', 'ver')
if not r[1] or r[1] ~= ARGV[2] then return {0} end
local exp = tonumber(r[3])
local sub = r[2] or ''
if mode == 'r' then
  if ARGV[6] ~= '' and sub ~= ARGV[6] then return {0} end
  drop(base, sid, r[4])
  if now >= exp then return {7, sub} end
  return {8, sub}
end
if mode == 'z' then
  if r[5] ~= '1' then return {1, exp} end
  drop(base, sid, r[4])
  return {8, sub}
end
if now >= exp then drop(base, sid, r[4]); return {7, sub} end
if mode == 'e' and exp <= tonumber(ARGV[6]) then drop(base, sid, r[4]); return {10, sub} end
return {1, exp}
"#;

/// Counts a record into its sandbox's ledger, if the limit allows.
///
/// KEYS: ledger, pending set, then the subject index if there is a subject.
/// ARGV: max records, sid, score (idle deadline), created (subject index
/// score), subject index expiry, pending (`1`: mark as a reservation made
/// before its record exists), now.
///
/// Answers 1 counted, 0 full. A member already present is counted once.
const RESERVE: &str = r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[2], ARGV[7], ARGV[2]) end
if #KEYS >= 3 then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  local t = redis.call('PEXPIRETIME', KEYS[3])
  if t < tonumber(ARGV[5]) then redis.call('PEXPIREAT', KEYS[3], ARGV[5]) end
end
return 1
"#;

/// Removes a record from its sandbox's ledger.
///
/// KEYS: ledger, pending set, then the subject index if known. ARGV: sid,
/// mode (`d` its family is deleted; `g` its family was found gone, which a
/// reservation younger than the pending window may legitimately be; `c`
/// confirm a reservation: only leave the pending set), now, pending window.
///
/// Answers how many ledger members were removed (0 or 1).
const RELEASE: &str = r#"
local sid = ARGV[1]
local mode = ARGV[2]
if mode == 'c' then redis.call('ZREM', KEYS[2], sid); return 0 end
if mode == 'g' then
  local p = redis.call('ZSCORE', KEYS[2], sid)
  if p and tonumber(ARGV[3]) - tonumber(p) < tonumber(ARGV[4]) then return 0 end
end
redis.call('ZREM', KEYS[2], sid)
if #KEYS >= 3 then redis.call('ZREM', KEYS[3], sid) end
return redis.call('ZREM', KEYS[1], sid)
"#;

/// Moves a record to another subject index of the same sandbox.
///
/// KEYS: old index, new index (or the old one again). ARGV: sid, created,
/// new index expiry.
const RESUBJECT: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local t = redis.call('PEXPIRETIME', KEYS[2])
if t < tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
return 1
"#;

/// The scripts, each built once (building one hashes it for EVALSHA).
pub(crate) struct Scripts {
    pub(crate) access: Script,
    pub(crate) create: Script,
    pub(crate) write: Script,
    pub(crate) migrate: Script,
    pub(crate) family: Script,
    pub(crate) reserve: Script,
    pub(crate) release: Script,
    pub(crate) resubject: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let family = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        access: family(ACCESS),
        create: family(CREATE),
        write: family(WRITE),
        migrate: family(MIGRATE),
        family: family(FAMILY),
        reserve: Script::new(RESERVE),
        release: Script::new(RELEASE),
        resubject: Script::new(RESUBJECT),
    }
});

/// Answer codes shared by the family scripts.
pub(crate) mod code {
    pub(crate) const MISS: i64 = 0;
    pub(crate) const CURRENT: i64 = 1;
    pub(crate) const ROTATED: i64 = 2;
    pub(crate) const GRACE: i64 = 3;
    pub(crate) const REUSE: i64 = 5;
    pub(crate) const REUSE_REVOKED: i64 = 6;
    pub(crate) const EXPIRED: i64 = 7;
    pub(crate) const DELETED: i64 = 8;
    pub(crate) const RETRY: i64 = 9;
    pub(crate) const EVICTED: i64 = 10;
}
