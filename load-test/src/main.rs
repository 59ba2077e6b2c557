//! `flagmeter-load`: the load generator and end-to-end loss audit.
//!
//! Not written yet: the load-test issue fills this crate in. Until then the
//! binary says so instead of pretending to measure anything.

fn main() {
    eprintln!("flagmeter-load is not implemented yet");
    std::process::exit(2);
}
