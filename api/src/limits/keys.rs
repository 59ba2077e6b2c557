//! The Valkey keys of a tenant's limits: five keys under
//! `{stream}:limits:{<tenant>}:`, whose hash tag (the tenant) puts them all
//! in one slot of a cluster, so that one script may touch them all
//! atomically, and spreads tenants over the slots. They live beside the
//! stream's keys (whose name they start with), so that two deployments
//! sharing a Valkey, or two tests, never meet.

/// The keys of one tenant's limits, and their slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeys {
    keys: [String; 5],
    slot: u32,
}

impl TenantKeys {
    /// `tenant`'s keys under `prefix` (`{stream}:limits`). Tenant slugs
    /// hold neither `{` nor `}`, so the tag is exactly the tenant.
    pub fn new(prefix: &str, tenant: &str) -> Self {
        let key = |part: &str| format!("{prefix}:{{{tenant}}}:{part}");
        Self {
            keys: ["s", "f", "r", "x", "w"].map(key),
            slot: stream::keys::slot(tenant),
        }
    }

    /// Every key, in the order the script takes them.
    pub fn all(&self) -> &[String; 5] {
        &self.keys
    }

    /// The state hash (base, totals, generation).
    pub fn state(&self) -> &str {
        &self.keys[0]
    }

    /// The cluster slot of every key (a cluster runs a pipeline on one
    /// node and refuses one whose keys span slots).
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_tenant_is_in_the_tenants_slot() {
        let keys = TenantKeys::new("flagmeter:events:limits", "acme-corp");
        assert_eq!(keys.state(), "flagmeter:events:limits:{acme-corp}:s");
        let slot = stream::keys::slot("acme-corp");
        assert_eq!(keys.slot(), slot);
        for key in keys.all() {
            let tag = key.split_once('{').unwrap().1.split_once('}').unwrap().0;
            assert_eq!(stream::keys::slot(tag), slot, "{key}");
        }
        assert_ne!(
            stream::keys::slot("globex-inc"),
            slot,
            "other tenants spread elsewhere"
        );
    }
}
