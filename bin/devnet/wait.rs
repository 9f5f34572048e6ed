//! Deadline-bounded polling: the one way devnet, the tests and the benchmarks wait for a
//! condition (the tests and benchmarks include this file with `#[path]`, see
//! `tests/it/harness/mod.rs`).

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::time::Instant;

/// Calls `f` every `poll` until it returns `Ok(Some(v))`, and returns `v`.
///
/// `Ok(None)` means "not yet"; `Err(e)` is remembered and polling continues. Each call of `f` is
/// itself bounded by the remaining time, so a hanging future cannot outlive `timeout`. On
/// timeout the error names `what`, the elapsed time, the attempt count and the last error.
pub async fn wait_for<F, Fut, T>(what: &str, timeout: Duration, poll: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts: u64 = 0;
    let mut last_err: Option<anyhow::Error> = None;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, f()).await {
            Ok(Ok(Some(v))) => return Ok(v),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => last_err = Some(anyhow!("attempt {attempts} still running when the deadline hit")),
        }
        let now = Instant::now();
        if now >= deadline {
            let last = match &last_err {
                Some(e) => format!("last error: {e:#}"),
                None => "condition never became true (no error)".to_string(),
            };
            return Err(anyhow!("timed out after {:?} waiting for {what} ({attempts} attempts); {last}", now - start));
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}
