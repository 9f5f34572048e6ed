//! The messages a [`Watcher`](super::Watcher) handles.

use actix::Message;

/// Run one follow step (sent by the watcher to itself on its poll timer, or at once while it is
/// catching up).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Poll;

/// The node announced a new head (a `newHeads` subscription): step now, or right after the
/// step in flight. Sent by the L1 watcher's head subscription ([`crate::rpc::ws`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HeadAnnounced;

/// Poll the node's labelled heads (L1: safe and finalized); sent by the watcher to itself.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PollHeads;

/// Stop taking work: no new step starts; replies once the step in flight (if any) is done.
/// Sent by the process at shutdown.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The watcher's health, for the RPC server and tests.
#[derive(Debug, Message)]
#[rtype(result = "WatcherStatus")]
pub struct GetStatus;

/// The answer to [`GetStatus`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatcherStatus {
    /// Times the supervisor restarted this watcher.
    pub restarts: u32,
    /// Failed steps in a row.
    pub consecutive_failures: u32,
    /// The last error, if the last step failed.
    pub last_error: Option<String>,
    /// Blocks between the node's head (minus confirmations) and the newest recorded block,
    /// after the last successful step; `None` before the first.
    pub lag_blocks: Option<u64>,
    /// Watchers of a `latest` block: why the node counts as failing although it answers (`null`
    /// for longer than its bound, or a block unchanged for longer than its bound), if it does.
    pub head_problem: Option<String>,
}
