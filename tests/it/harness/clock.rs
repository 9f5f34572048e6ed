//! The wall clock, which block timestamps are compared with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::wait::wait_for;

/// Time since the Unix epoch.
pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Waits until the wall clock reaches Unix second `at`.
pub async fn wait_until_unix_second(at: u64, timeout: Duration) -> Result<()> {
    wait_for(&format!("the wall clock to reach Unix second {at}"), timeout, Duration::from_millis(20), || async {
        Ok((unix_now().as_secs() >= at).then_some(()))
    })
    .await
}
