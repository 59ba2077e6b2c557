//! What each request is: like the original's k6 script, a random tenant, a
//! random feature and 100–5,099 tokens, posted (alone or in batches, as JSON
//! or MessagePack) or a read (a tenant's usage, or its entitlement check), in
//! the configured mix. With reservations, each single post is a model call:
//! a reservation of its tokens first, which the event then settles.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use serde::Serialize;

/// Fewest and one past the most tokens of an event, as in the original.
const TOKENS: std::ops::Range<i64> = 100..5100;

/// How posts are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Msgpack,
}

impl Format {
    /// The `Content-Type` of a post.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Msgpack => "application/msgpack",
        }
    }

    fn encode<T: Serialize>(self, body: &T) -> Vec<u8> {
        // Serializing strings and integers into memory cannot fail.
        match self {
            Self::Json => serde_json::to_vec(body).expect("events serialize to JSON"),
            Self::Msgpack => {
                rmp_serde::to_vec_named(body).expect("events serialize to MessagePack")
            }
        }
    }
}

/// One request to send.
#[derive(Debug)]
pub struct Request {
    pub kind: Kind,
    pub url: String,
    /// Body of a post, in the run's [`Format`].
    pub body: Option<Vec<u8>>,
    /// `(tenant index, tokens)` of each event posted.
    pub events: Vec<(usize, i64)>,
    /// The JSON body of the reservation to make before the post, which
    /// the post's event settles.
    pub reservation: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /api/events` or `/api/events/batch`: answered 202 when stored.
    Post,
    /// `GET /api/usage/{tenant}` (200, or 404 for a tenant not seen yet) or
    /// `GET /api/usage/{tenant}/check` (200).
    Read,
}

/// What a read asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reads {
    /// `GET /api/usage/{tenant}`.
    Usage,
    /// `GET /api/usage/{tenant}/check?tokens=1000`, the entitlement check.
    Check,
}

#[derive(Serialize)]
struct Event<'a> {
    tenant: &'a str,
    feature: &'a str,
    tokens: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "reservationId", skip_serializing_if = "Option::is_none")]
    reservation_id: Option<String>,
}

/// A reservation for one event, under the event's id (the reservation's
/// id is then `<tenant>:<event id>`).
#[derive(Serialize)]
struct Reservation<'a> {
    tenant: &'a str,
    feature: &'a str,
    tokens: i64,
    id: &'a str,
}

#[derive(Serialize)]
struct Batch<'a> {
    events: Vec<Event<'a>>,
}

/// Makes requests; shared by every task of the run.
#[derive(Debug)]
pub struct Traffic {
    base: String,
    tenants: Vec<String>,
    features: Vec<String>,
    /// Chance that a request is a post.
    post_share: f64,
    reads: Reads,
    batch: u32,
    format: Format,
    /// With an audit or reservations, events carry `{run id}-{counter}`
    /// ids.
    ids: Option<String>,
    counter: AtomicU64,
    /// Whether each (single) post is preceded by a reservation it settles.
    reserve: bool,
}

impl Traffic {
    pub fn new(
        base: &str,
        tenants: Vec<String>,
        features: Vec<String>,
        mix_percent: u8,
        reads: Reads,
        (batch, format): (u32, Format),
        run_id: Option<String>,
    ) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            tenants,
            features,
            post_share: f64::from(mix_percent) / 100.0,
            reads,
            batch,
            format,
            ids: run_id,
            counter: AtomicU64::new(0),
            reserve: false,
        }
    }

    /// Makes each single post a model call: a reservation of its tokens
    /// first (events then carry ids, if the run gave them).
    pub fn reserving(self, reserve: bool) -> Self {
        Self { reserve, ..self }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    /// `GET /api/usage/{tenant}` (tenant names are checked to be URL-safe).
    pub fn usage_url(&self, tenant: &str) -> String {
        format!("{}/api/usage/{tenant}", self.base)
    }

    /// `POST /api/reservations`.
    pub fn reservations_url(&self) -> String {
        format!("{}/api/reservations", self.base)
    }

    /// The next request, chosen at random.
    pub fn next(&self) -> Request {
        let mut rng = rand::rng();
        if !rng.random_bool(self.post_share) {
            let tenant = &self.tenants[rng.random_range(0..self.tenants.len())];
            return Request {
                kind: Kind::Read,
                url: match self.reads {
                    Reads::Usage => self.usage_url(tenant),
                    Reads::Check => format!("{}/check?tokens=1000", self.usage_url(tenant)),
                },
                body: None,
                events: Vec::new(),
                reservation: None,
            };
        }
        let events: Vec<(usize, usize, i64)> = (0..self.batch)
            .map(|_| {
                (
                    rng.random_range(0..self.tenants.len()),
                    rng.random_range(0..self.features.len()),
                    rng.random_range(TOKENS),
                )
            })
            .collect();
        let mut bodies = events.iter().map(|&(tenant, feature, tokens)| Event {
            tenant: &self.tenants[tenant],
            feature: &self.features[feature],
            tokens,
            id: self.ids.as_ref().map(|run| {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                format!("{run}-{n}")
            }),
            reservation_id: None,
        });
        let mut reservation = None;
        let (url, body) = if self.batch == 1 {
            let mut event = bodies.next();
            if let Some(event) = event.as_mut().filter(|_| self.reserve)
                && let Some(id) = &event.id
            {
                reservation = Some(Format::Json.encode(&Reservation {
                    tenant: event.tenant,
                    feature: event.feature,
                    tokens: event.tokens,
                    id,
                }));
                event.reservation_id = Some(format!("{}:{id}", event.tenant));
            }
            (
                format!("{}/api/events", self.base),
                self.format.encode(&event),
            )
        } else {
            (
                format!("{}/api/events/batch", self.base),
                self.format.encode(&Batch {
                    events: bodies.collect(),
                }),
            )
        };
        Request {
            kind: Kind::Post,
            url,
            body: Some(body),
            events: events
                .into_iter()
                .map(|(t, _, tokens)| (t, tokens))
                .collect(),
            reservation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn traffic(mix: u8, batch: u32, run: Option<&str>) -> Traffic {
        Traffic::new(
            "http://127.0.0.1:3000/",
            vec!["acme-corp".into(), "globex-inc".into()],
            vec!["gpt-4o".into()],
            mix,
            Reads::Usage,
            (batch, Format::Json),
            run.map(str::to_owned),
        )
    }

    #[test]
    fn single_posts_carry_one_valid_event_with_a_unique_id() {
        let traffic = traffic(100, 1, Some("run"));
        let a = traffic.next();
        let b = traffic.next();
        assert_eq!(a.kind, Kind::Post);
        assert_eq!(a.url, "http://127.0.0.1:3000/api/events");
        let body: Value = serde_json::from_slice(a.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["id"], "run-0");
        assert_eq!(body["feature"], "gpt-4o");
        let tokens = body["tokens"].as_i64().unwrap();
        assert!(TOKENS.contains(&tokens));
        assert_eq!(a.events.len(), 1);
        assert_eq!(a.events[0].1, tokens);
        assert_eq!(
            body["tenant"].as_str().unwrap(),
            traffic.tenants()[a.events[0].0]
        );
        let body: Value = serde_json::from_slice(b.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["id"], "run-1");
    }

    #[test]
    fn batches_go_to_the_batch_route_and_ids_are_left_out_without_audit() {
        let request = traffic(100, 5, None).next();
        assert_eq!(request.url, "http://127.0.0.1:3000/api/events/batch");
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        let events = body["events"].as_array().unwrap();
        assert_eq!(events.len(), 5);
        assert!(events.iter().all(|e| e.get("id").is_none()));
        let sent: i64 = events.iter().map(|e| e["tokens"].as_i64().unwrap()).sum();
        assert_eq!(sent, request.events.iter().map(|e| e.1).sum::<i64>());
    }

    #[test]
    fn a_zero_mix_only_reads() {
        let request = traffic(0, 1, None).next();
        assert_eq!(request.kind, Kind::Read);
        assert!(request.url.starts_with("http://127.0.0.1:3000/api/usage/"));
        assert!(request.body.is_none());
    }

    #[test]
    fn a_call_reserves_its_tokens_under_the_events_id_and_the_event_settles_it() {
        let traffic = Traffic::new(
            "http://127.0.0.1:3000",
            vec!["acme-corp".into()],
            vec!["gpt-4o".into()],
            100,
            Reads::Usage,
            (1, Format::Msgpack),
            Some("run".into()),
        )
        .reserving(true);
        let call = traffic.next();
        let reservation: Value =
            serde_json::from_slice(call.reservation.as_deref().unwrap()).unwrap();
        let event: Value = rmp_serde::from_slice(call.body.as_deref().unwrap()).unwrap();
        assert_eq!(reservation["id"], "run-0");
        assert_eq!(reservation["tokens"], event["tokens"]);
        assert_eq!(event["reservationId"], "acme-corp:run-0");
    }
}
