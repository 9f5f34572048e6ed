//! [`HeadLiveness`]: is the node's latest block alive? A node that answers `null` for it, or
//! whose latest block stops changing while it answers every request, fails as surely as one
//! that is down, but no request of it fails. This tracks both from the answers the watcher gets,
//! as plain logic over given instants; the watcher counts, logs and reports what it says.

use std::time::{Duration, Instant};

use rollup_supervisor_storage::BlockRef;

/// How the node's latest block fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFailure {
    /// The node answered `null`.
    Null,
    /// The block has not changed for longer than the bound.
    Stalled,
}

impl HeadFailure {
    /// `null` or `stalled`, as in the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadFailure::Null => "null",
            HeadFailure::Stalled => "stalled",
        }
    }
}

/// What one answer changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// This poll failed so (count it).
    pub failed: Option<HeadFailure>,
    /// An episode of this failure began with it (say so, once).
    pub began: Option<HeadFailure>,
    /// An episode of this failure ended with it, after this long.
    pub ended: Option<(HeadFailure, Duration)>,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct HeadLiveness {
    null_after: Duration,
    stall_after: Option<Duration>,
    /// The newest block seen, and when it was first seen.
    head: Option<(BlockRef, Instant)>,
    /// Since when every answer has been `null`.
    null_since: Option<Instant>,
    /// The failure being reported, since when.
    episode: Option<(HeadFailure, Instant)>,
}

impl HeadLiveness {
    /// `null` answers are a readiness failure once they last longer than `null_after`; an
    /// unchanged block is a failure once it lasts longer than `stall_after` (`None`: never).
    pub fn new(null_after: Duration, stall_after: Option<Duration>) -> Self {
        Self { null_after, stall_after, head: None, null_since: None, episode: None }
    }

    /// The node answered `answer` (`None`: `null`) at `now`.
    pub fn observe(&mut self, answer: Option<BlockRef>, now: Instant) -> Observed {
        let failed = match answer {
            None => {
                self.null_since.get_or_insert(now);
                Some(HeadFailure::Null)
            }
            Some(block) => {
                self.null_since = None;
                let changed = self.head.is_none_or(|(h, _)| (h.number, h.hash) != (block.number, block.hash));
                if changed {
                    self.head = Some((block, now));
                }
                match (self.stall_after, self.head) {
                    (Some(bound), Some((_, since))) if now.saturating_duration_since(since) > bound => {
                        Some(HeadFailure::Stalled)
                    }
                    _ => None,
                }
            }
        };
        let mut observed = Observed { failed, ..Observed::default() };
        match (self.episode, failed) {
            (None, Some(kind)) => {
                observed.began = Some(kind);
                self.episode = Some((kind, now));
            }
            (Some((kind, since)), Some(now_kind)) if kind != now_kind => {
                observed.ended = Some((kind, now.saturating_duration_since(since)));
                observed.began = Some(now_kind);
                self.episode = Some((now_kind, now));
            }
            (Some((kind, since)), None) => {
                observed.ended = Some((kind, now.saturating_duration_since(since)));
                self.episode = None;
            }
            _ => {}
        }
        observed
    }

    /// The failure that makes the node unready at `now`, as a sentence: `null` answers for longer
    /// than their bound, or an unchanged block for longer than its bound.
    pub fn problem(&self, now: Instant) -> Option<String> {
        if let Some(since) = self.null_since {
            let lasted = now.saturating_duration_since(since);
            return (lasted > self.null_after).then(|| {
                format!(
                    "the node has answered null for its latest block for {} s (bound {} ms)",
                    lasted.as_secs(),
                    self.null_after.as_millis()
                )
            });
        }
        let (bound, (block, since)) = (self.stall_after?, self.head?);
        let lasted = now.saturating_duration_since(since);
        (lasted > bound).then(|| {
            format!(
                "the node's latest block {block} has not changed for {} s (bound {} s)",
                lasted.as_secs(),
                bound.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    fn head(n: u64) -> BlockRef {
        BlockRef { number: n, hash: B256::with_last_byte(n as u8), parent_hash: B256::ZERO, timestamp: n }
    }

    const NULL_AFTER: Duration = Duration::from_secs(6);
    const STALL_AFTER: Duration = Duration::from_secs(120);

    #[test]
    fn null_answers_fail_every_poll_are_said_once_and_make_the_node_unready_after_the_bound() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut l = HeadLiveness::new(NULL_AFTER, Some(STALL_AFTER));
        assert_eq!(l.observe(Some(head(1)), at(0)), Observed::default());
        let first = l.observe(None, at(2));
        assert_eq!(first, Observed { failed: Some(HeadFailure::Null), began: Some(HeadFailure::Null), ended: None });
        assert_eq!(l.problem(at(5)), None, "within the bound");
        let again = l.observe(None, at(4));
        assert_eq!(again, Observed { failed: Some(HeadFailure::Null), began: None, ended: None }, "said once");
        let problem = l.problem(at(9)).expect("null for 7 s, bound 6 s");
        assert!(problem.contains("answered null") && problem.contains("for 7 s"), "{problem}");

        let back = l.observe(Some(head(2)), at(10));
        assert_eq!(
            back,
            Observed { failed: None, began: None, ended: Some((HeadFailure::Null, Duration::from_secs(8))) }
        );
        assert_eq!(l.problem(at(10)), None);
        // A new episode is said again.
        assert_eq!(l.observe(None, at(11)).began, Some(HeadFailure::Null));
    }

    #[test]
    fn an_unchanged_head_fails_once_it_outlasts_the_bound_and_recovers_when_it_moves() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut l = HeadLiveness::new(NULL_AFTER, Some(STALL_AFTER));
        l.observe(Some(head(5)), at(0));
        assert_eq!(l.observe(Some(head(5)), at(120)), Observed::default(), "at the bound, not beyond");
        assert_eq!(l.problem(at(120)), None);
        let stalled = l.observe(Some(head(5)), at(121));
        assert_eq!(
            stalled,
            Observed { failed: Some(HeadFailure::Stalled), began: Some(HeadFailure::Stalled), ended: None }
        );
        assert_eq!(l.observe(Some(head(5)), at(130)).began, None, "said once");
        let problem = l.problem(at(130)).expect("stalled");
        assert!(problem.contains("#5") && problem.contains("has not changed for 130 s"), "{problem}");
        // The readiness check sees the stall grow between polls too.
        assert!(l.problem(at(500)).is_some_and(|p| p.contains("500 s")));

        // Another block at the same height is a change (a reorg of the tip).
        let moved = l.observe(Some(BlockRef { hash: B256::repeat_byte(7), ..head(5) }), at(131));
        assert_eq!(moved.ended, Some((HeadFailure::Stalled, Duration::from_secs(10))));
        assert_eq!(l.problem(at(131)), None);
    }

    #[test]
    fn null_then_the_same_old_head_is_a_stall_and_no_bound_means_no_stall() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut l = HeadLiveness::new(NULL_AFTER, Some(STALL_AFTER));
        l.observe(Some(head(5)), at(0));
        l.observe(None, at(100));
        let same = l.observe(Some(head(5)), at(200));
        assert_eq!(same.ended.map(|(k, _)| k), Some(HeadFailure::Null));
        assert_eq!(same.began, Some(HeadFailure::Stalled), "it has not changed since second 0");

        let mut never = HeadLiveness::new(NULL_AFTER, None);
        never.observe(Some(head(5)), at(0));
        assert_eq!(never.observe(Some(head(5)), at(10_000)), Observed::default());
        assert_eq!(never.problem(at(10_000)), None);
    }
}
