//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! secret a tenant's receiver shares with FlagMeter, and the three headers
//! that let the receiver check that a delivery is FlagMeter's and fresh.
//!
//! A secret is `whsec_` + base64 of 32 random bytes; the key is those
//! bytes. A delivery carries `webhook-id` (the same on every retry of one
//! message, so a receiver can drop repeats), `webhook-timestamp` (Unix
//! seconds of this attempt, so it can refuse replays) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`
//! over the exact body bytes sent.
//!
//! After a rotation the old secret keeps signing for a grace period
//! ([`SigningSecrets`]): the header then holds one signature per secret,
//! space-separated, the new one first, and a receiver accepts a delivery
//! if any of them verifies with the secret it knows. So a receiver that has
//! not switched yet loses nothing.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

/// What every secret starts with.
pub const PREFIX: &str = "whsec_";

/// Random bytes in a new secret (the spec asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A webhook signing secret, `whsec_<base64>`, known to hold a key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

/// Never print a secret.
impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

/// One signed attempt: the values of the three headers and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelivery {
    /// `webhook-id`: the same for every attempt at one message.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    pub body: Vec<u8>,
}

/// Why a stored secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a whsec_ secret with a base64 key")]
pub struct MalformedSecret;

impl WebhookSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut key = vec![0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self {
            text: format!("{PREFIX}{}", STANDARD.encode(&key)),
            key,
        }
    }

    /// Reads a secret as issued.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        let encoded = text.strip_prefix(PREFIX).ok_or(MalformedSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| MalformedSecret)?;
        if key.is_empty() {
            return Err(MalformedSecret);
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The whole secret, to show once and to store.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Enough to recognise the secret, not to use it: `whsec_AbCd****`.
    pub fn masked(&self) -> String {
        let shown: String = self.text[PREFIX.len()..].chars().take(4).collect();
        format!("{PREFIX}{shown}****")
    }

    /// The `webhook-signature` value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The secrets a delivery is signed with: the webhook's current one, and
/// those rotated out whose grace period has not ended, newest first.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    pub current: WebhookSecret,
    pub retired: Vec<WebhookSecret>,
}

impl SigningSecrets {
    /// One attempt at delivering `body` as message `id`, signed now with
    /// every secret: `v1,<current> v1,<retired>...`.
    pub fn delivery(&self, id: String, body: Vec<u8>, now: DateTime<Utc>) -> SignedDelivery {
        let timestamp = now.timestamp();
        let signature = std::iter::once(&self.current)
            .chain(&self.retired)
            .map(|secret| secret.sign(&id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        SignedDelivery {
            signature,
            id,
            timestamp,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification's test suite.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_delivery_during_a_grace_period_carries_a_signature_per_secret_newest_first() {
        let (new, old) = (WebhookSecret::generate(), WebhookSecret::generate());
        let now = DateTime::from_timestamp(1_614_265_330, 0).unwrap();
        let both = SigningSecrets {
            current: new.clone(),
            retired: vec![old.clone()],
        };
        let delivery = both.delivery("msg_1".into(), b"{}".to_vec(), now);
        let expected = [&new, &old].map(|s| s.sign("msg_1", now.timestamp(), b"{}"));
        assert_eq!(delivery.signature, expected.join(" "));
        let alone = SigningSecrets {
            current: new,
            retired: Vec::new(),
        };
        let delivery = alone.delivery("msg_1".into(), b"{}".to_vec(), now);
        assert_eq!(delivery.signature, expected[0]);
    }

    #[test]
    fn a_new_secret_parses_back_and_is_masked_when_shown() {
        let secret = WebhookSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(secret.expose()).unwrap(), secret);
        assert_eq!(secret.masked().len(), "whsec_".len() + 8);
        assert!(!format!("{secret:?}").contains(&secret.expose()[10..]));
        assert_ne!(WebhookSecret::generate(), secret);
        for bad in ["", "whsec_", "whsec_!!!", "sk_abcd"] {
            assert_eq!(WebhookSecret::parse(bad), Err(MalformedSecret), "{bad}");
        }
    }
}
