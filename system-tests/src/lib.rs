//! The system tests: FlagMeter's real binaries as separate processes,
//! against real PostgreSQL and Valkey/Redis that the tests kill, restart,
//! freeze and cut off, each scenario ending with an audit that nothing
//! accepted was lost or counted twice. The suite is in `tests/faults`;
//! this library is empty on purpose (a package needs a target).
