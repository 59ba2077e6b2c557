//! The alert metrics, named once: deliveries by `destination` (`slack`,
//! `webhook`: a bounded label, never a tenant), and alerts recorded with
//! nowhere to go. Both binaries record alerts (the api after a tenant's
//! settings change), only the pipeline delivers them.

use metrics::{Unit, counter, describe_counter};

use crate::sender::Destination;

/// Deliveries a destination accepted (2xx), by destination.
pub const DELIVERED: &str = "flagmeter_alerts_delivered_total";
/// Deliveries given up on (a final 4xx, a refused URL or secret, or past
/// the give-up horizon), by destination.
pub const FAILED: &str = "flagmeter_alerts_failed_total";
/// Failed delivery attempts that will be retried, by destination.
pub const RETRIES: &str = "flagmeter_alert_retries_total";
/// Alerts recorded while their tenant had neither an enabled Slack webhook
/// nor an enabled signed webhook.
pub const WITHOUT_DESTINATION: &str = "flagmeter_alerts_without_destination_total";

/// Describes what recording alerts measures and starts it at zero.
pub fn describe_recording() {
    describe_counter!(
        WITHOUT_DESTINATION,
        Unit::Count,
        "Alerts recorded while the tenant had no enabled Slack or signed webhook: nothing is sent"
    );
    counter!(WITHOUT_DESTINATION).increment(0);
}

/// Describes what delivering alerts measures and starts each counter at
/// zero for every destination.
pub fn describe_delivery() {
    for (name, help) in [
        (
            DELIVERED,
            "Alert deliveries the destination accepted, by destination",
        ),
        (
            FAILED,
            "Alert deliveries given up on (refused for good, or too old), by destination",
        ),
        (
            RETRIES,
            "Failed alert delivery attempts that will be retried, by destination",
        ),
    ] {
        describe_counter!(name, Unit::Count, help);
        for destination in Destination::ALL {
            counter!(name, "destination" => destination.label()).increment(0);
        }
    }
}
