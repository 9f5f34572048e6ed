//! The reliability suite (placeholder; see tools/reliability.sh).
fn main() {}
