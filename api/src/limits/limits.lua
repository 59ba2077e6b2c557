-- FlagMeter's limits of one tenant, decided atomically in Valkey (see
-- api/src/limits/mod.rs for the argument). Every key is the tenant's and
-- shares one hash tag, so the script runs on one node of a cluster.
--
-- KEYS[1] S  hash  the state: the base (counted usage as PostgreSQL last
--                  showed it, with the settings read with it), running
--                  totals of what is in flight and reserved, the window's
--                  totals, and `gen`, the generation of the last base or sweep
--                  applied
-- KEYS[2] F  hash  accepted, not yet counted events: id -> "tokens cost
--                  registered_ms occurred_ms"
-- KEYS[3] R  hash  reservations: id -> "tokens cost expires_ms bucket state
--                  settled_by" (state L live, S settled, R released, E
--                  expired); a finished one stays as a tombstone for a while
-- KEYS[4] X  zset  reservation ids by when they next change (expiry, or the
--                  tombstone's end)
-- KEYS[5] W  hash  the sliding window: second -> "tokens reserved_tokens
--                  requests reserved_requests"
--
-- ARGV[1] is the command; replies are arrays of integers and strings.
-- Numbers are Lua doubles: exact to 2^53 (9 * 10^15 tokens or micro-units).

local S, F, R, X, W = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cmd = ARGV[1]

local WINDOW = 60                -- seconds of the per-minute window
local TOMBSTONE_MS = 60000       -- how long a finished reservation is remembered after its expiry
local KEEP_MS = 35 * 86400000    -- keys of a tenant idle this long expire
local SWEEP_DUE = 256            -- most reservations ended per call

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local sec = math.floor(now / 1000)

local FIELDS = {'gen', 'b_tokens', 'b_cost', 'b_read', 'b_start', 'b_end', 'quota', 'budget',
                'tpm', 'rpm', 'f_tokens', 'f_cost', 'r_tokens', 'r_cost',
                'w_t', 'w_rt', 'w_n', 'w_rn', 'w_from', 'w_last'}
local s = {}
do
  local values = redis.call('HMGET', S, unpack(FIELDS))
  for i, field in ipairs(FIELDS) do s[field] = tonumber(values[i]) end
end
local changed = false

local function n(field) return s[field] or 0 end
local function set(field, value) s[field] = value; changed = true end
local function add(field, delta) if delta ~= 0 then set(field, n(field) + delta) end end
local function int(x) return string.format('%.0f', x) end

-- `command key items...` in slices, each within Lua's unpack limit; the
-- replies joined.
local function sliced(command, key, items)
  local replies = {}
  for from = 1, #items, 1000 do
    local slice = redis.call(command, key, unpack(items, from, math.min(from + 999, #items)))
    if type(slice) == 'table' then
      for _, v in ipairs(slice) do replies[#replies + 1] = v end
    end
  end
  return replies
end

local function save()
  if not changed then return end
  local pairs_ = {}
  for _, field in ipairs(FIELDS) do
    if s[field] ~= nil then
      pairs_[#pairs_ + 1] = field
      pairs_[#pairs_ + 1] = int(s[field])
    end
  end
  redis.call('HSET', S, unpack(pairs_))
end

-- The window ------------------------------------------------------------

local function bucket(second)
  local v = redis.call('HGET', W, second)
  if not v then return 0, 0, 0, 0 end
  local t, rt, q, rq = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
  return tonumber(t), tonumber(rt), tonumber(q), tonumber(rq)
end

-- Adds to the bucket of `second`, if it is still in the window.
local function bucket_add(second, dt, drt, dq, drq)
  if second <= sec - WINDOW then return end
  local t, rt, q, rq = bucket(second)
  redis.call('HSET', W, second, int(t + dt) .. ' ' .. int(rt + drt) .. ' ' .. int(q + dq) .. ' ' .. int(rq + drq))
  add('w_t', dt); add('w_rt', drt); add('w_n', dq); add('w_rn', drq)
  if second > n('w_last') then set('w_last', second) end
  if s.w_from == nil or second < s.w_from then set('w_from', second) end
end

-- Drops the buckets that have left the window (seconds <= now - 60).
local function expire_window()
  local last_out = sec - WINDOW
  if s.w_from == nil or s.w_from > last_out then return end
  if n('w_last') <= last_out then
    redis.call('DEL', W)
    set('w_t', 0); set('w_rt', 0); set('w_n', 0); set('w_rn', 0)
  else
    -- A bucket younger than the window was written, so the previous call
    -- was less than a window ago: at most WINDOW seconds to walk.
    for second = s.w_from, last_out do
      local t, rt, q, rq = bucket(second)
      if t ~= 0 or rt ~= 0 or q ~= 0 or rq ~= 0 then
        add('w_t', -t); add('w_rt', -rt); add('w_n', -q); add('w_rn', -rq)
        redis.call('HDEL', W, second)
      end
    end
  end
  set('w_from', last_out + 1)
end

-- When enough of `field` (1 tokens, 3 requests) has left the window for
-- `need` more to fit; the window's end when even an empty one cannot.
local function room_at(field, need)
  local got = 0
  for second = math.max(n('w_from'), sec - WINDOW + 1), sec do
    local v = {bucket(second)}
    got = got + v[field]
    if got >= need then return (second + WINDOW) * 1000 end
  end
  return (sec + WINDOW) * 1000
end

-- Reservations ---------------------------------------------------------------

local function get_reservation(id)
  local v = redis.call('HGET', R, id)
  if not v then return nil end
  local tokens, cost, expires, second, state, by =
    string.match(v, '^(%S+) (%S+) (%S+) (%S+) (%S) ?(.*)$')
  return {tokens = tonumber(tokens), cost = tonumber(cost), expires = tonumber(expires),
          second = tonumber(second), state = state, by = by}
end

local function put_reservation(id, r, next_change)
  redis.call('HSET', R, id, int(r.tokens) .. ' ' .. int(r.cost) .. ' ' .. int(r.expires) .. ' '
    .. int(r.second) .. ' ' .. r.state .. ' ' .. (r.by or ''))
  redis.call('ZADD', X, next_change, id)
end

-- Ends a live reservation: it stops holding room. `state` is how it ended.
local function end_live(id, r, state, by)
  add('r_tokens', -r.tokens); add('r_cost', -r.cost)
  r.state = state
  r.by = by
  put_reservation(id, r, r.expires + TOMBSTONE_MS)
end

-- Expired reservations stop holding room; their request stays in the
-- window at the reserved size (the call may well have happened). Old
-- tombstones go.
local function sweep_reservations()
  local ended = 0
  local due = redis.call('ZRANGEBYSCORE', X, '-inf', now, 'LIMIT', 0, SWEEP_DUE)
  for _, id in ipairs(due) do
    local r = get_reservation(id)
    if r ~= nil and r.state == 'L' then
      bucket_add(r.second, 0, -r.tokens, 0, -1)
      end_live(id, r, 'E', '')
      ended = ended + 1
    else
      redis.call('HDEL', R, id)
      redis.call('ZREM', X, id)
    end
  end
  return ended
end

-- The decision ---------------------------------------------------------------

-- Whether the base is usable: read, and for the period that is running.
local function known()
  return s.b_read ~= nil and now < n('b_end')
end

local function limited(field)
  return s[field] ~= nil and s[field] >= 0
end

-- Bit mask of the limits a request of `tokens` and `cost` would break
-- (1 quota, 2 budget, 4 tokens per minute, 8 requests per minute). With
-- `strict_budget` (the check) any cost at or above the budget breaks it.
local function breaks(tokens, cost, strict_budget)
  local mask = 0
  if known() then
    if n('b_tokens') + n('f_tokens') + n('r_tokens') + tokens > n('quota') then mask = mask + 1 end
    if limited('budget') then
      local spent = n('b_cost') + n('f_cost') + n('r_cost') + cost
      if spent > s.budget or (strict_budget and spent >= s.budget) then mask = mask + 2 end
    end
  end
  if limited('tpm') and n('w_t') + tokens > s.tpm then mask = mask + 4 end
  if limited('rpm') and n('w_n') + 1 > s.rpm then mask = mask + 8 end
  return mask
end

-- The figures every decision answers with.
local function figures(status, expires, mask, tokens, ended)
  local tpm_at, rpm_at = -1, -1
  if mask % 8 >= 4 then tpm_at = room_at(1, n('w_t') + tokens - s.tpm) end
  if mask % 16 >= 8 then rpm_at = room_at(3, n('w_n') + 1 - s.rpm) end
  local function opt(field) if s[field] == nil then return -1 end return s[field] end
  return {status, now, expires, known() and 1 or 0, opt('b_read'), n('b_start'), n('b_end'),
          n('quota'), opt('budget'), opt('tpm'), opt('rpm'),
          n('b_tokens') + n('f_tokens'), n('r_tokens'), n('b_cost') + n('f_cost'), n('r_cost'),
          n('w_t'), n('w_rt'), n('w_n'), n('w_rn'), n('w_last'), mask, tpm_at, rpm_at, ended}
end

-- In-flight events -----------------------------------------------------------

local function parse_event(v)
  local tokens, cost, registered, occurred = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
  return tonumber(tokens), tonumber(cost), tonumber(registered), tonumber(occurred)
end

-- Removes listed events from F; with `into_base`, those of the base's
-- period join the base (they are counted, and the base did not hold them).
local function take_events(ids, into_base)
  if #ids == 0 then return 0 end
  local values = sliced('HMGET', F, ids)
  local gone = {}
  for i, v in ipairs(values) do
    if v then
      local tokens, cost, _, occurred = parse_event(v)
      add('f_tokens', -tokens); add('f_cost', -cost)
      if into_base and s.b_read ~= nil and occurred >= n('b_start') and occurred < n('b_end') then
        add('b_tokens', tokens); add('b_cost', cost)
      end
      gone[#gone + 1] = ids[i]
    end
  end
  sliced('HDEL', F, gone)
  return #gone
end

local function keep_keys()
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, KEEP_MS) end
end

-- Commands -----------------------------------------------------------------------

expire_window()
local ended = sweep_reservations()

if cmd == 'reserve' then
  -- id, tokens, cost, ttl_ms, whether to decide without a base (1: grant
  -- as far as the per-minute limits allow; 0: answer `unknown`)
  local id, tokens, cost, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local existing = get_reservation(id)
  if existing ~= nil then
    save()
    return figures('replayed', existing.expires, 0, 0, ended)
  end
  if not known() and ARGV[6] ~= '1' then
    save()
    return figures('unknown', -1, 0, tokens, ended)
  end
  local mask = breaks(tokens, cost, false)
  if mask ~= 0 then
    save()
    return figures('refused', -1, mask, tokens, ended)
  end
  local r = {tokens = tokens, cost = cost, expires = now + ttl, second = sec, state = 'L', by = ''}
  put_reservation(id, r, r.expires)
  add('r_tokens', tokens); add('r_cost', cost)
  bucket_add(sec, tokens, tokens, 1, 1)
  if s.b_read == nil then keep_keys() end
  save()
  return figures('granted', r.expires, 0, 0, ended)

elseif cmd == 'check' then
  -- tokens
  local tokens = tonumber(ARGV[2])
  save()
  if not known() then return figures('unknown', -1, 0, tokens, ended) end
  local mask = breaks(tokens, 0, true)
  return figures(mask == 0 and 'allowed' or 'refused', -1, mask, tokens, ended)

elseif cmd == 'register' then
  -- count, then per event: id, tokens, cost, occurred_ms, reservation id ('' for none)
  local count = tonumber(ARGV[2])
  local ids = {}
  for i = 1, count do ids[i] = ARGV[3 + (i - 1) * 5] end
  local before = sliced('HMGET', F, ids)
  local latest, writes, settled = {}, {}, 0
  for i = 1, count do
    local at = 3 + (i - 1) * 5
    local id, tokens, cost = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local occurred, rid = ARGV[at + 3], ARGV[at + 4]
    -- The same id again (a retry) replaces what it held.
    local old = latest[id] or before[i]
    if old then
      local old_tokens, old_cost = parse_event(old)
      add('f_tokens', -old_tokens); add('f_cost', -old_cost)
    end
    local value = int(tokens) .. ' ' .. int(cost) .. ' ' .. int(now) .. ' ' .. occurred
    latest[id] = value
    writes[#writes + 1] = id
    writes[#writes + 1] = value
    add('f_tokens', tokens); add('f_cost', cost)
    local new_request = not old
    if rid ~= '' then
      local r = get_reservation(rid)
      if r ~= nil and r.state == 'L' then
        -- The reservation's room passes to the event, in one step.
        bucket_add(r.second, tokens - r.tokens, -r.tokens, 0, -1)
        end_live(rid, r, 'S', id)
        settled = settled + 1
        new_request = false
      elseif r ~= nil and r.state == 'E' then
        -- Late: the request is in the window already, at the reserved size.
        bucket_add(r.second, tokens - r.tokens, 0, 0, 0)
        r.state = 'S'; r.by = id
        put_reservation(rid, r, r.expires + TOMBSTONE_MS)
        new_request = false
      elseif r ~= nil and r.state == 'S' and r.by == id then
        new_request = false
      end
    end
    if new_request then bucket_add(sec, tokens, 0, 1, 0) end
  end
  sliced('HSET', F, writes)
  if redis.call('PTTL', F) < 0 then keep_keys() end
  save()
  return {settled, ended}

elseif cmd == 'release' then
  -- id
  local id = ARGV[2]
  local r = get_reservation(id)
  local released = 0
  if r ~= nil and r.state == 'L' then
    bucket_add(r.second, -r.tokens, -r.tokens, -1, -1)
    end_live(id, r, 'R', '')
    released = 1
  end
  save()
  return {released, ended}

elseif cmd == 'list' then
  -- most: the entries of F to list (all when there are no more)
  local most = tonumber(ARGV[2])
  save()
  local entries
  local partial = 0
  if redis.call('HLEN', F) <= most then
    entries = redis.call('HGETALL', F)
  else
    entries = redis.call('HSCAN', F, 0, 'COUNT', most)[2]
    partial = 1
  end
  local reply = {int(n('gen')), partial}
  for _, v in ipairs(entries) do reply[#reply + 1] = v end
  return reply

elseif cmd == 'apply' then
  -- gen, mode (base | sweep), phantom cutoff ms, 9 base fields (tokens, cost,
  -- read ms, period start, period end, quota, budget, tpm, rpm), then the
  -- count of counted ids and those ids, then the count of phantom
  -- candidates and those ids
  if int(n('gen')) ~= ARGV[2] then
    save()
    return {0, ended}
  end
  local mode, cutoff = ARGV[3], tonumber(ARGV[4])
  local at = 14
  local counted = {}
  for i = 1, tonumber(ARGV[at]) do counted[i] = ARGV[at + i] end
  at = at + #counted + 1
  local candidates = {}
  for i = 1, tonumber(ARGV[at]) do candidates[i] = ARGV[at + i] end
  take_events(counted, mode == 'sweep')
  -- A candidate registered before the cutoff and not counted was never
  -- appended (see the module docs); one registered again since stays.
  if #candidates > 0 then
    local values = sliced('HMGET', F, candidates)
    local phantoms = {}
    for i, v in ipairs(values) do
      if v then
        local _, _, registered = parse_event(v)
        if registered < cutoff then phantoms[#phantoms + 1] = candidates[i] end
      end
    end
    take_events(phantoms, false)
  end
  if mode == 'base' then
    local base = {'b_tokens', 'b_cost', 'b_read', 'b_start', 'b_end', 'quota', 'budget', 'tpm', 'rpm'}
    for i, field in ipairs(base) do set(field, tonumber(ARGV[4 + i])) end
  end
  add('gen', 1)
  save()
  keep_keys()
  return {1, ended}
end

return redis.error_reply('unknown limits command ' .. tostring(cmd))
