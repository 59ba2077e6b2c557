//! The typed calls of the limits script (`limits.lua`): one script for
//! every command, so that a tenant's decisions, settlements, releases and
//! the hand-over from in-flight to counted are each one atomic step on
//! the node that holds the tenant's slot. Sent by `EVALSHA`; a node that
//! does not know the script (a restart, a failover) gets the call again
//! with the source (`EVAL`), which is safe because a `NOSCRIPT` call ran
//! nothing. Calls for several tenants are separate commands sent at once,
//! never one pipeline: a cluster refuses a pipeline whose keys span slots.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value};
use stream::Valkey;

use super::keys::TenantKeys;

/// The script's source, sent whole to a node that lacks it.
const SOURCE: &str = include_str!("limits.lua");
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SOURCE));

/// What the script said about a decision (a reservation, a check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A reservation was granted now.
    Granted,
    /// The reservation id is known: this is its answer again.
    Replayed,
    /// A limit has no room.
    Refused,
    /// The check found room for the call.
    Allowed,
    /// The tenant's counted usage is not known (no base, or one of a period
    /// that has ended): nothing was decided.
    Unknown,
}

/// The per-minute window's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Tokens of the requests of the last 60 seconds, reservations
    /// included at their size ...
    pub tokens: i64,
    /// ... of which live reservations hold this many.
    pub reserved_tokens: i64,
    pub requests: i64,
    pub reserved_requests: i64,
    /// The second of the newest request in the window (seconds since the
    /// epoch; older than the window when it is empty).
    pub newest_second: i64,
}

/// The limits of a tenant as the script saw them in one atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub status: Status,
    /// Valkey's clock at the decision, in ms since the epoch.
    pub now_ms: i64,
    /// When the reservation expires (granted or replayed).
    pub expires_ms: Option<i64>,
    /// Whether counted usage (the base) is known for the running period.
    pub known: bool,
    /// When the base was read from PostgreSQL (`asOf`).
    pub base_read_ms: Option<i64>,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub quota: i64,
    pub budget_micros: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub requests_per_minute: Option<i64>,
    /// Counted tokens plus those accepted and not yet counted.
    pub used_tokens: i64,
    /// Tokens live reservations hold.
    pub reserved_tokens: i64,
    /// The same in micro-units of the currency.
    pub used_cost: i64,
    pub reserved_cost: i64,
    pub window: Window,
    /// The limits the request would break: bits 1 quota, 2 budget, 4 tokens
    /// per minute, 8 requests per minute.
    pub blocked: u8,
    /// When a per-minute limit that blocks has room again, in ms.
    pub tokens_per_minute_room_ms: Option<i64>,
    pub requests_per_minute_room_ms: Option<i64>,
    /// Reservations that expired in this call (for the metrics).
    pub expired: u64,
}

/// One accepted event, as the script registers it.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub id: &'a str,
    pub tokens: i64,
    /// Its cost in micro-units, rounded up.
    pub cost_micros: i64,
    pub occurred_ms: i64,
    /// The reservation it settles, if any.
    pub reservation: Option<&'a str>,
}

/// A tenant's in-flight events as listed, with the generation they were
/// listed at.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub generation: u64,
    /// Whether only part of them was listed (too many to list at once).
    pub partial: bool,
    /// Each event's id and when it was registered (ms).
    pub events: Vec<(String, i64)>,
}

/// What an `apply` sets: counted usage as of one PostgreSQL snapshot, and
/// the settings read with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub tokens: i64,
    pub cost_micros: i64,
    pub read_ms: i64,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub quota: i64,
    pub budget_micros: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub requests_per_minute: Option<i64>,
}

/// How an `apply` treats the events found counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// A new base replaces the old: the counted events are in it.
    Base(Base),
    /// The counted events join the current base (a sweep).
    Sweep,
}

/// The script's answer to `reserve` (`allow_unknown`: decide even
/// without a base, on the per-minute limits alone).
pub async fn reserve(
    conn: &mut Valkey,
    keys: &TenantKeys,
    id: &str,
    tokens: i64,
    cost_micros: i64,
    ttl_ms: i64,
    allow_unknown: bool,
) -> RedisResult<Figures> {
    let reply: Vec<Value> = invoke(
        conn,
        keys,
        &[
            "reserve",
            id,
            &tokens.to_string(),
            &cost_micros.to_string(),
            &ttl_ms.to_string(),
            if allow_unknown { "1" } else { "0" },
        ],
    )
    .await?;
    figures(&reply)
}

/// The script's answer to `check`: would a call of `tokens` fit?
pub async fn check(conn: &mut Valkey, keys: &TenantKeys, tokens: i64) -> RedisResult<Figures> {
    let reply: Vec<Value> = invoke(conn, keys, &["check", &tokens.to_string()]).await?;
    figures(&reply)
}

/// Each tenant's figures as a check of 0 tokens sees them (expired
/// reservations ended), in one round trip.
pub async fn peek(conn: &mut Valkey, tenants: &[TenantKeys]) -> RedisResult<Vec<Figures>> {
    let calls: Vec<(&TenantKeys, Vec<String>)> = tenants
        .iter()
        .map(|keys| (keys, vec!["check".to_owned(), "0".to_owned()]))
        .collect();
    invoke_all(conn, &calls)
        .await?
        .iter()
        .map(|reply| {
            let items: Vec<Value> = redis::from_redis_value_ref(reply)?;
            figures(&items)
        })
        .collect()
}

/// Registers accepted events, settling the reservations they name: per
/// tenant, how many reservations were settled and how many expired.
pub async fn register(
    conn: &mut Valkey,
    tenants: &[(TenantKeys, Vec<Registration<'_>>)],
) -> RedisResult<Vec<(u64, u64)>> {
    let calls: Vec<(&TenantKeys, Vec<String>)> = tenants
        .iter()
        .map(|(keys, events)| {
            let mut args = Vec::with_capacity(2 + events.len() * 5);
            args.push("register".to_owned());
            args.push(events.len().to_string());
            for event in events {
                args.push(event.id.to_owned());
                args.push(event.tokens.to_string());
                args.push(event.cost_micros.to_string());
                args.push(event.occurred_ms.to_string());
                args.push(event.reservation.unwrap_or_default().to_owned());
            }
            (keys, args)
        })
        .collect();
    invoke_all(conn, &calls)
        .await?
        .iter()
        .map(|reply| {
            let pair: (u64, u64) = redis::from_redis_value_ref(reply)?;
            Ok(pair)
        })
        .collect()
}

/// Releases a live reservation; whether it was live, and how many
/// expired in the call.
pub async fn release(conn: &mut Valkey, keys: &TenantKeys, id: &str) -> RedisResult<(bool, u64)> {
    let (released, expired): (i64, u64) = invoke(conn, keys, &["release", id]).await?;
    Ok((released == 1, expired))
}

/// The generation of the tenant's base and sweeps.
pub async fn generation(conn: &mut Valkey, keys: &TenantKeys) -> RedisResult<u64> {
    let generation: Option<u64> = redis::cmd("HGET")
        .arg(keys.state())
        .arg("gen")
        .query_async(conn)
        .await?;
    Ok(generation.unwrap_or(0))
}

/// Lists up to `most` in-flight events of each tenant, in one round trip.
pub async fn list(
    conn: &mut Valkey,
    tenants: &[&TenantKeys],
    most: usize,
) -> RedisResult<Vec<Listing>> {
    let most = most.to_string();
    let calls: Vec<(&TenantKeys, Vec<String>)> = tenants
        .iter()
        .map(|keys| (*keys, vec!["list".to_owned(), most.clone()]))
        .collect();
    invoke_all(conn, &calls)
        .await?
        .iter()
        .map(listing)
        .collect()
}

/// What one tenant's apply changes.
#[derive(Debug, Clone, Copy)]
pub struct Applying<'a> {
    pub keys: &'a TenantKeys,
    /// The generation read before the snapshot: the apply happens only if
    /// no other was applied since.
    pub generation: u64,
    pub apply: Apply,
    /// Phantom candidates registered before this are dropped.
    pub cutoff_ms: i64,
    /// Events the snapshot showed counted: they leave the in-flight set.
    pub counted: &'a [String],
    /// Events listed, not counted, registered before `cutoff_ms`.
    pub phantoms: &'a [String],
}

impl Base {
    /// What a sweep passes in the base's place (the script ignores it).
    const UNUSED: Self = Self {
        tokens: 0,
        cost_micros: 0,
        read_ms: 0,
        period_start_ms: 0,
        period_end_ms: 0,
        quota: 0,
        budget_micros: None,
        tokens_per_minute: None,
        requests_per_minute: None,
    };
}

/// Applies what PostgreSQL snapshots showed, per tenant, in one round
/// trip; whether each was applied.
pub async fn apply(conn: &mut Valkey, applies: &[Applying<'_>]) -> RedisResult<Vec<bool>> {
    let calls: Vec<(&TenantKeys, Vec<String>)> = applies
        .iter()
        .map(|a| {
            let (mode, base) = match a.apply {
                Apply::Base(base) => ("base", base),
                Apply::Sweep => ("sweep", Base::UNUSED),
            };
            let none = |v: Option<i64>| v.unwrap_or(-1).to_string();
            let mut args = vec![
                "apply".to_owned(),
                a.generation.to_string(),
                mode.to_owned(),
                a.cutoff_ms.to_string(),
                base.tokens.to_string(),
                base.cost_micros.to_string(),
                base.read_ms.to_string(),
                base.period_start_ms.to_string(),
                base.period_end_ms.to_string(),
                base.quota.to_string(),
                none(base.budget_micros),
                none(base.tokens_per_minute),
                none(base.requests_per_minute),
                a.counted.len().to_string(),
            ];
            args.extend(a.counted.iter().cloned());
            args.push(a.phantoms.len().to_string());
            args.extend(a.phantoms.iter().cloned());
            (a.keys, args)
        })
        .collect();
    invoke_all(conn, &calls)
        .await?
        .iter()
        .map(|reply| {
            let (applied, _expired): (i64, u64) = redis::from_redis_value_ref(reply)?;
            Ok(applied == 1)
        })
        .collect()
}

/// One call: by the script's hash (`EVALSHA`), and, on a node that does
/// not know it (a restart, a failover: the script cache is not
/// replicated), once more with its source (`EVAL`), which caches it
/// there. Only the node of the tenant's slot is involved: `SCRIPT LOAD`
/// would go to every node and fail while one is down.
async fn invoke<T: redis::FromRedisValue>(
    conn: &mut Valkey,
    keys: &TenantKeys,
    args: &[impl ToRedisArgs],
) -> RedisResult<T> {
    match command(keys, args, true).query_async(conn).await {
        Err(err) if no_script(&err) => command(keys, args, false).query_async(conn).await,
        reply => reply,
    }
}

/// The call as `EVALSHA` (`by_hash`) or `EVAL`.
fn command(keys: &TenantKeys, args: &[impl ToRedisArgs], by_hash: bool) -> Cmd {
    let mut cmd = if by_hash {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(SCRIPT.get_hash());
        cmd
    } else {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SOURCE);
        cmd
    };
    cmd.arg(keys.all().len()).arg(keys.all()).arg(args);
    cmd
}

/// Several calls, each on its own tenant's slot, sent at once: each is a
/// command of its own, because a cluster runs a pipeline on one node only
/// and refuses one whose keys span slots. On the multiplexed connection
/// they still share the wire, so a single node answers them in about one
/// round trip, and a cluster's nodes in parallel.
async fn invoke_all(
    conn: &Valkey,
    calls: &[(&TenantKeys, Vec<String>)],
) -> RedisResult<Vec<Value>> {
    futures::future::try_join_all(calls.iter().map(|(keys, args)| {
        let mut conn = conn.clone();
        async move { invoke(&mut conn, keys, args).await }
    }))
    .await
}

fn no_script(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

fn malformed(what: &str) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply of the limits script",
        what.to_owned(),
    ))
}

/// Reads the array `figures()` of the script returns.
fn figures(reply: &[Value]) -> RedisResult<Figures> {
    let [status, numbers @ ..] = reply else {
        return Err(malformed("an empty reply"));
    };
    let status: String = redis::from_redis_value_ref(status)?;
    let status = match status.as_str() {
        "granted" => Status::Granted,
        "replayed" => Status::Replayed,
        "refused" => Status::Refused,
        "allowed" => Status::Allowed,
        "unknown" => Status::Unknown,
        other => return Err(malformed(other)),
    };
    let numbers: Vec<i64> = numbers
        .iter()
        .map(redis::from_redis_value_ref)
        .collect::<Result<_, _>>()?;
    let [
        now_ms,
        expires_ms,
        known,
        base_read_ms,
        period_start_ms,
        period_end_ms,
        quota,
        budget,
        tpm,
        rpm,
        used_tokens,
        reserved_tokens,
        used_cost,
        reserved_cost,
        window_tokens,
        window_reserved_tokens,
        window_requests,
        window_reserved_requests,
        newest_second,
        blocked,
        tpm_room,
        rpm_room,
        expired,
    ] = numbers[..]
    else {
        return Err(malformed("the wrong number of figures"));
    };
    let some = |v: i64| (v >= 0).then_some(v);
    Ok(Figures {
        status,
        now_ms,
        expires_ms: some(expires_ms),
        known: known == 1,
        base_read_ms: some(base_read_ms),
        period_start_ms,
        period_end_ms,
        quota,
        budget_micros: some(budget),
        tokens_per_minute: some(tpm),
        requests_per_minute: some(rpm),
        used_tokens,
        reserved_tokens,
        used_cost,
        reserved_cost,
        window: Window {
            tokens: window_tokens,
            reserved_tokens: window_reserved_tokens,
            requests: window_requests,
            reserved_requests: window_reserved_requests,
            newest_second,
        },
        blocked: u8::try_from(blocked).map_err(|_| malformed("a blocked mask"))?,
        tokens_per_minute_room_ms: some(tpm_room),
        requests_per_minute_room_ms: some(rpm_room),
        expired: u64::try_from(expired).unwrap_or(0),
    })
}

/// Reads the reply of `list`: generation, partial, then id and value pairs.
fn listing(reply: &Value) -> RedisResult<Listing> {
    let items: Vec<String> = redis::from_redis_value_ref(reply)?;
    let [generation, partial, entries @ ..] = &items[..] else {
        return Err(malformed("a listing without its header"));
    };
    let events = entries
        .chunks_exact(2)
        .map(|pair| {
            // The value is "tokens cost registered_ms occurred_ms".
            let registered = pair[1]
                .split(' ')
                .nth(2)
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| malformed("an in-flight entry"))?;
            Ok((pair[0].clone(), registered))
        })
        .collect::<RedisResult<_>>()?;
    Ok(Listing {
        generation: generation.parse().map_err(|_| malformed("a generation"))?,
        partial: partial == "1",
        events,
    })
}
