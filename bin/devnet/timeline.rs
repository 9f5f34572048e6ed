//! The timeline on stdout, the L1 progress lines, and how the timeline writes numbers, hashes,
//! times and shell words.

use std::{
    convert::Infallible,
    fmt::Display,
    io::Write as _,
    time::{Duration, Instant},
};

use alloy::primitives::B256;
use rollup_supervisor_actors::chains_db::messages::{GetLocalSafe, GetTip, Track};
use serde_json::Value;

use super::consts::L2_CHAIN_ID;
use crate::node::Node;

/// At most one "L1 blocks recorded" line this often.
const L1_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The timeline on stdout: one line per event, prefixed with the seconds since start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeline(pub(super) Instant);

impl Timeline {
    pub(super) fn say(&self, text: impl Display) {
        // A closed stdout (`| head`) must not end the demo.
        let _ = writeln!(std::io::stdout().lock(), "[{:>6.1}s] {text}", self.0.elapsed().as_secs_f64());
    }

    /// A line that belongs to the previous event, indented under its text.
    pub(super) fn more(&self, text: impl Display) {
        let _ = writeln!(std::io::stdout().lock(), "          {text}");
    }
}

/// Prints a line when L1 has advanced, at most every [`L1_REPORT_EVERY`], with the L2 chain's
/// newest derivation entry. Runs until dropped.
pub(super) async fn report_l1(node: &Node, tl: Timeline) -> Infallible {
    let mut shown: Option<u64> = None;
    let mut said_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if said_at.is_some_and(|t| t.elapsed() < L1_REPORT_EVERY) {
            continue;
        }
        let Ok(Ok(Some(tip))) = node.db.send(GetTip(Track::L1)).await else { continue };
        if shown.is_some_and(|n| n >= tip.number) {
            continue;
        }
        let from = shown.map_or(0, |n| n + 1);
        let blocks =
            if from == tip.number { format!("L1 block {from}") } else { format!("L1 blocks {from}..{}", tip.number) };
        let derived = match node.db.send(GetLocalSafe(L2_CHAIN_ID)).await {
            Ok(Ok(Some(pair))) => {
                format!("; L2 derivation head: block {} as of L1 block {}", pair.derived.number, pair.source.number)
            }
            _ => String::new(),
        };
        tl.say(format!("{blocks} recorded (tip {}){derived}", short(&tip.hash)));
        shown = Some(tip.number);
        said_at = Some(Instant::now());
    }
}

/// A JSON-RPC quantity (`"0x1a"`) as a number, or `?`.
pub(super) fn quantity(value: &Value) -> String {
    value
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// `0x1234abcd…`
pub(super) fn short(hash: &B256) -> String {
    let full = hash.to_string();
    format!("{}…", full.get(..10).unwrap_or(&full))
}

pub(super) fn hashes(list: &[B256]) -> String {
    list.iter().map(short).collect::<Vec<_>>().join(", ")
}

/// `17:02:00 UTC`.
pub(super) fn clock(ts: u64) -> String {
    let day = ts % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

/// `80 gwei` for whole gwei, `105.60 gwei` otherwise.
pub(super) fn gwei(wei: u128) -> String {
    if wei.is_multiple_of(1_000_000_000) {
        format!("{} gwei", wei / 1_000_000_000)
    } else {
        format!("{:.2} gwei", wei as f64 / 1e9)
    }
}

/// `s` as one shell word.
pub(super) fn sh(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+=@%,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn helpers_format_what_the_timeline_shows() {
        assert_eq!(clock(1_795_280_520), "17:02:00 UTC");
        assert_eq!(short(&B256::repeat_byte(0xab)), "0xabababab…");
        assert_eq!(sh("/tmp/x-1/jwt.hex"), "/tmp/x-1/jwt.hex");
        assert_eq!(sh("/tmp/a b/it's"), r"'/tmp/a b/it'\''s'");
        assert_eq!(quantity(&json!("0x1a")), "26");
        assert_eq!(gwei(80_000_000_000), "80 gwei");
        assert_eq!(gwei(105_600_000_001), "105.60 gwei");
        assert_eq!(gwei(1_100_000_001), "1.10 gwei");
    }
}
