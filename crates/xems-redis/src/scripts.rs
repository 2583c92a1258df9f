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
//! token and the end of the last open grace window, `rq` the last
//! retired-window addresses rotated away, `rn` how many addresses the
//! retired-token index holds, `rp` how many its last pruning kept.
//!
//! Retired addresses. The last `window` (the store's retired-token window)
//! are kept in the record itself, in `rq`, oldest first: fixed-width
//! 36-character entries `kind || digest (22) || end of grace (13 digits)`,
//! where kind `x` is a minted token (no pointer) and `y` a caller key (its
//! pointer lives as long as the entry). An address leaving `rq` is
//! forgotten, unless it is still in its grace window: then it moves to the
//! family's retired-token index (a sorted set, member `kind || digest`,
//! score the end of grace) until its grace ends, up to 1024 remembered in
//! all; the index is pruned in batches (when it holds twice as many as the
//! last pruning kept, and at least twice the window). So a session rotated
//! a few times per grace period never has an index: only a session rotated
//! faster than `window` times per grace period (a burst of parallel
//! requests, a client bug, a replay attack) pays for one.
//!
//! The rotation path is two commands inside the script: HMGET the record
//! and HSET it (the successor's digest, the retired address appended to
//! `rq`, the refreshed deadline); a token the selector names needs no
//! pointer, and a retired one needs no key. Everything else (grace hits,
//! the retired-token index, refreshes that move the physical expiry, reuse)
//! is off that path.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the family scripts. Only `fmt` and `lib` are built on
/// every call: the helpers of the less common paths (deleting a family,
/// moving its expiry, creating one, forgetting retired caller keys) are
/// built by `lib()` on first use, because every closure a script defines
/// costs every call (a few percent of a rotation, measured).
const PRELUDE: &str = r#"
local function fmt(x) return string.format('%d', x) end
local L
local function lib()
  if L then return L end
  local function tok(base, d) return base .. 't:' .. d end
  -- The physical expiry of a family whose idle deadline is `exp`: later
  -- than the logical one by at least `slack`, and by half a TTL so that a
  -- session refreshed on every request moves it only every half TTL.
  local function phys(exp, abs, ttl, slack) return math.min(abs, exp + math.floor(ttl / 2)) + slack end
  -- The members (`kind || digest`) of the entries of `rq`.
  local function ring(rq)
    local ms = {}
    for i = 1, #(rq or ''), 36 do ms[#ms + 1] = string.sub(rq, i, i + 22) end
    return ms
  end
  -- Deletes the pointers of the retired addresses `ms` that have one
  -- (members `y<digest>`; minted tokens, `x<digest>`, have none), a few
  -- hundred per DEL (the batch bounds Lua's stack use).
  local function unptr(base, ms)
    local ks = {}
    for i = 1, #ms do
      if string.byte(ms[i]) == 121 then
        ks[#ks + 1] = tok(base, string.sub(ms[i], 2))
        if #ks == 512 then redis.call('DEL', unpack(ks)); ks = {} end
      end
    end
    if #ks > 0 then redis.call('DEL', unpack(ks)) end
  end
  -- Deletes a family: its record, the retired-token index and every
  -- pointer (the current address's, if it is a caller key, and the retired
  -- ones').
  local function drop(base, sid, cur, rq)
    local xk = base .. 'x:' .. sid
    unptr(base, redis.call('ZRANGE', xk, 0, -1))
    unptr(base, ring(rq))
    if cur then redis.call('DEL', tok(base, cur)) end
    redis.call('DEL', base .. 'f:' .. sid, xk)
  end
  -- Moves the physical expiry of every key of a family to `px`.
  local function repx(base, sid, cur, rq, px)
    local rk = base .. 'f:' .. sid
    local xk = base .. 'x:' .. sid
    local xs = redis.call('ZRANGE', xk, 0, -1)
    for _, ms in ipairs({xs, ring(rq)}) do
      for i = 1, #ms do
        if string.byte(ms[i]) == 121 then redis.call('PEXPIREAT', tok(base, string.sub(ms[i], 2)), fmt(px)) end
      end
    end
    -- A no-op when the current address is a minted token (it has no
    -- pointer), as for the index when the family has none.
    redis.call('PEXPIREAT', tok(base, cur), fmt(px))
    redis.call('PEXPIREAT', xk, fmt(px))
    redis.call('HSET', rk, 'px', fmt(px))
    redis.call('PEXPIREAT', rk, fmt(px))
  end
  -- Writes a new family `sid` whose current address has digest `cur`,
  -- with the pointer `ptr` when that address is a caller key (nil for a
  -- minted token); returns its idle deadline.
  local function create(base, ptr, cur, sid, sandbox, v, now, ttl, abs, sub, slack)
    local exp = math.min(now + ttl, abs)
    local px = phys(exp, abs, ttl, slack)
    local rk = base .. 'f:' .. sid
    redis.call('HSET', rk, 'sb', sandbox, 'cur', cur, 'v', v, 'ver', '1',
      'ct', fmt(now), 'exp', fmt(exp), 'abs', fmt(abs), 'ttl', fmt(ttl), 'mt', fmt(now), 'px', fmt(px))
    if sub ~= '' then redis.call('HSET', rk, 'sub', sub) end
    redis.call('PEXPIREAT', rk, fmt(px))
    if ptr then redis.call('SET', ptr, sid, 'PXAT', fmt(px)) end
    return exp
  end
  L = {phys = phys, unptr = unptr, drop = drop, repx = repx, create = create}
  return L
end
"#;

/// Uses an address (token or caller key).
///
/// An address is found one of three ways (`ARGV[16]`): `x`, a token this
/// store minted: `KEYS[1]` is the record its selector names and `ARGV[17]`
/// the token's digest; `y`, a caller key whose family is known: `KEYS[1]` is
/// the record and `ARGV[17..]` the key's digests; `p`, a caller key (or any
/// other address): KEYS are its `n` pointer candidates (its digest under
/// each secret of the keyring, current first).
///
/// ARGV: now, sandbox, n, base, mode, reuse revokes (`1`/`0`), slack,
/// rotate (`0` never, `1` always, `2` older than), age, end of the grace
/// window a rotation opens (now + grace, 13 digits), refresh (`0` no, `1`
/// idle, `2` to a TTL), TTL, successor digest (empty: none), sealed
/// successor, retired window, how (`x`, `y`, `p`), then the `n` digests
/// (`x`, `y`).
///
/// Modes: `r` resolve, `t` touch, `w` read for a write, `e` exists, `d`
/// delete, `k` which family (no replay handling).
///
/// Answers `{code, ...}`: 0 miss; 1 current, 3 grace (`e`: 4 retired); 2
/// rotated; 5 replay refused; 6 replay, family revoked; 7 expired (family
/// deleted); 8 deleted; 11 a rotation is due but no successor was given
/// (`p`: the successor must name the family, so ask again with `y`), with
/// `sid, digest`. Codes 1-3 carry `sid, sub, ver, ct, exp, abs, ttl, v,
/// ctok, cur, old exp`; 6-8 carry `sid, sub`.
const ACCESS: &str = r#"
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local base = ARGV[4]
local mode = ARGV[5]
local how = ARGV[16]
local kind = 'y'
local sid, ptr, rk
if how == 'p' then
  for i = 1, n do
    local v = redis.call('GET', KEYS[i])
    if v then sid = v; ptr = KEYS[i]; break end
  end
  if not sid then return {0} end
  rk = base .. 'f:' .. sid
else
  rk = KEYS[1]
  sid = string.sub(rk, #base + 3)
  if how == 'x' then kind = 'x' end
end
local r = redis.call('HMGET', rk, 'sb', 'cur', 'ver', 'ct', 'exp', 'abs', 'ttl', 'mt', 'sub', 'px', 'gu', 'v', 'rn', 'rp',
  'rq')
if not r[1] then
  if ptr then redis.call('DEL', ptr) end
  return {0}
end
if r[1] ~= ARGV[2] then return {0} end
local cur = r[2]
local sub = r[9] or ''
local rq = r[15] or ''
local exp = tonumber(r[5])
if now >= exp then lib().drop(base, sid, cur, rq); return {7, sid, sub} end
local xk = base .. 'x:' .. sid
local card = tonumber(r[13] or '0')
local d, state
if ptr then
  d = string.sub(ptr, #base + 3)
  if d == cur then state = 1 end
else
  for i = 1, n do
    if ARGV[16 + i] == cur then d = cur; state = 1; break end
  end
end
if not state then
  -- A retired address: its end of grace, if the family still remembers it
  -- (in `rq`, at an entry boundary, or in the retired-token index).
  local s
  for i = 1, n do
    local c = d or ARGV[16 + i]
    local m = kind .. c
    local p = string.find(rq, m, 1, true)
    while p and (p - 1) % 36 ~= 0 do p = string.find(rq, m, p + 1, true) end
    if p then s = string.sub(rq, p + 23, p + 35); d = c; break end
    if ptr then break end
  end
  if not s and card > 0 then
    if ptr then
      s = redis.call('ZSCORE', xk, 'y' .. d)
    else
      local ms = {}
      for i = 1, n do ms[i] = kind .. ARGV[16 + i] end
      local ss = redis.call('ZMSCORE', xk, unpack(ms))
      for i = 1, n do
        if ss[i] then s = ss[i]; d = ARGV[16 + i]; break end
      end
    end
  end
  if not s then
    if ptr then redis.call('DEL', ptr) end
    return {0}
  end
  if now < tonumber(s) then state = 3 else state = 4 end
end
if mode == 'e' then return {state} end
if mode == 'd' then lib().drop(base, sid, cur, rq); return {8, sid, sub} end
if mode == 'k' then
  if state == 4 then return {0} end
  return {state, sid}
end
if state == 4 then
  if ARGV[6] == '1' then lib().drop(base, sid, cur, rq); return {6, sid, sub} end
  return {5}
end
local slack = tonumber(ARGV[7])
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
    local nd = ARGV[13]
    if nd == '' then return {11, sid, d} end
    -- The successor is a minted token naming this record: no pointer to
    -- write. The old address joins `rq`; the oldest entry beyond the window
    -- leaves it, for the index if still in grace, else forgotten.
    local window = tonumber(ARGV[15])
    rq = rq .. kind .. d .. ARGV[10]
    local spilled = false
    while #rq > window * 36 do
      local old = string.sub(rq, 1, 36)
      rq = string.sub(rq, 37)
      if window < 1024 and tonumber(string.sub(old, 24)) > now then
        redis.call('ZADD', xk, string.sub(old, 24), string.sub(old, 1, 23))
        card = card + 1
        if card == 1 then redis.call('PEXPIREAT', xk, r[10]) end
        spilled = true
      elseif string.byte(old) == 121 then
        lib().unptr(base, {string.sub(old, 1, 23)})
      end
    end
    local grace_until = tonumber(ARGV[10])
    local gus = nil
    if grace_until >= gu then gu = grace_until; gus = ARGV[10] end
    cur = nd
    upd[#upd + 1] = 'cur'; upd[#upd + 1] = cur
    upd[#upd + 1] = 'mt'; upd[#upd + 1] = ARGV[1]
    upd[#upd + 1] = 'rq'; upd[#upd + 1] = rq
    if gu > now then
      upd[#upd + 1] = 'ctok'; upd[#upd + 1] = ARGV[14]
      upd[#upd + 1] = 'gu'; upd[#upd + 1] = gus or fmt(gu)
    else
      drop_ctok = true
    end
    if spilled then
      -- Prune the index in batches: forget the addresses whose grace ended,
      -- and the oldest beyond 1024 remembered in all. `rp` is how many the
      -- last pruning kept: the next one waits until twice as many (and at
      -- least twice the window) are there, so a session rotated faster than
      -- its grace period prunes once per `rp` rotations, not on every one.
      local cap = 1024 - window
      local floor = math.max(window, tonumber(r[14] or '0'))
      if card >= math.min(2 * floor, cap + 1) then
        local old = redis.call('ZRANGEBYSCORE', xk, '-inf', ARGV[1])
        if #old > 0 then
          lib().unptr(base, old)
          redis.call('ZREM', xk, unpack(old))
        end
        card = card - #old
        if card > cap then
          local over = redis.call('ZRANGE', xk, 0, card - cap - 1)
          lib().unptr(base, over)
          redis.call('ZREM', xk, unpack(over))
          card = cap
        end
        upd[#upd + 1] = 'rp'; upd[#upd + 1] = fmt(card)
      end
      upd[#upd + 1] = 'rn'; upd[#upd + 1] = fmt(card)
    end
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
if moved then lib().repx(base, sid, cur, rq, lib().phys(exp, abs, ttl, slack)) end
local v = ''
if mode ~= 't' then v = r[12] end
-- Version and creation time go back as the stored text: no conversion.
return {code, sid, sub, r[3], r[4], exp, abs, ttl, v, ctok, cur, old_exp}
"#;

/// Creates a family.
///
/// KEYS: record, then the pointer when the address is a caller key (a
/// minted token needs none: its selector names the record). ARGV: now,
/// sandbox, base, sid, sealed value, TTL, absolute deadline, subject digest
/// (or empty), slack, the address's digest.
///
/// Answers `{0, exp}` created, `{1}` the address is taken, `{2}` the id is
/// taken.
const CREATE: &str = r#"
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {2} end
local exp = lib().create(ARGV[3], KEYS[2], ARGV[10], ARGV[4], ARGV[2], ARGV[5], tonumber(ARGV[1]), tonumber(ARGV[6]),
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
local r = redis.call('HMGET', rk, 'sb', 'ver', 'ct', 'exp', 'abs', 'ttl', 'px', 'sub', 'cur', 'rq')
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
  if exp + slack > tonumber(r[7]) then lib().repx(base, sid, r[9], r[10], lib().phys(exp, abs, ttl, slack)) end
end
return {2, ver, tonumber(r[3]), exp, abs, ttl, old_sub, sub, old_exp}
"#;

/// Moves a family to another sandbox: deletes the old family and creates the
/// new one in the same group, in one step.
///
/// KEYS: old record, new record. ARGV: now, from, base, old sid, expected
/// version, to, new sid, sealed value, TTL, absolute deadline, subject
/// digest (or empty: keep the old one), slack, the new (minted) token's
/// digest.
///
/// Answers `{0}` gone, `{1}` the value changed since it was read, `{9}` the
/// new id is taken, `{2, old sub, sub, exp}` moved.
const MIGRATE: &str = r#"
local now = tonumber(ARGV[1])
local base = ARGV[3]
local r = redis.call('HMGET', KEYS[1], 'sb', 'ver', 'exp', 'sub', 'cur', 'rq')
if not r[1] or r[1] ~= ARGV[2] or now >= tonumber(r[3]) then return {0} end
if tonumber(r[2]) ~= tonumber(ARGV[5]) then return {1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {9} end
local old_sub = r[4] or ''
local sub = ARGV[11]
if sub == '' then sub = old_sub end
lib().drop(base, ARGV[4], r[5], r[6])
local exp = lib().create(base, nil, ARGV[13], ARGV[7], ARGV[6], ARGV[8], now, tonumber(ARGV[9]), tonumber(ARGV[10]),
  sub, tonumber(ARGV[12]))
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
local r = redis.call('HMGET', KEYS[1], 'sb', 'sub', 'exp', 'cur', 'ver', 'rq')
if not r[1] or r[1] ~= ARGV[2] then return {0} end
local exp = tonumber(r[3])
local sub = r[2] or ''
if mode == 'r' then
  if ARGV[6] ~= '' and sub ~= ARGV[6] then return {0} end
  lib().drop(base, sid, r[4], r[6])
  if now >= exp then return {7, sub} end
  return {8, sub}
end
if mode == 'z' then
  if r[5] ~= '1' then return {1, exp} end
  lib().drop(base, sid, r[4], r[6])
  return {8, sub}
end
if now >= exp then lib().drop(base, sid, r[4], r[6]); return {7, sub} end
if mode == 'e' and exp <= tonumber(ARGV[6]) then lib().drop(base, sid, r[4], r[6]); return {10, sub} end
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
    pub(crate) const EVICTED: i64 = 10;
    pub(crate) const NEEDS_SUCCESSOR: i64 = 11;
}
