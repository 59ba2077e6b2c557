//! Paging of the list routes: one default page size, and the largest offset
//! a JSON client can state exactly.

/// Page size of the tenant and alert lists when none is asked for.
pub fn default_page() -> u64 {
    100
}
