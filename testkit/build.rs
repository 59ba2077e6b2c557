//! Fingerprints the schema for the test databases' template
//! (`env::template`): a hash of every migration source file, so that a test
//! run after any change to a migration (a new one, or one edited while it
//! is being written) gets a freshly migrated template instead of a stale one.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::Path,
};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migration/src");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the migration crate's sources are beside testkit")
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)
            .expect("a readable migration file")
            .hash(&mut hasher);
    }
    println!(
        "cargo:rustc-env=FLAGMETER_SCHEMA_FINGERPRINT={:016x}",
        hasher.finish()
    );
}
