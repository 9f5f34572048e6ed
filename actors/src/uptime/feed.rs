//! The ABIs the uptime flow speaks, through alloy's `sol!`: the sequencer uptime feed
//! (`updateStatus`, `latestRoundData`, `getRoundData`, `hasRole`, `grantRole`) and our
//! `UptimeReporter` (`report`, `setReporter`, `isReporter`, `feed`). Typed calls, typed
//! returns, no hand-counted words.

use alloy::{
    primitives::{Address, B256, Bytes, I256, U256, b256},
    sol,
    sol_types::SolCall,
};

sol! {
    /// The Chainlink-style sequencer uptime feed (Linea's `LineaSequencerUptimeFeed`).
    interface IUptimeFeed {
        function updateStatus(bool status, uint64 timestamp) external;
        function latestRoundData() external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function getRoundData(uint80 _roundId) external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
        function hasRole(bytes32 role, address account) external view returns (bool);
        function grantRole(bytes32 role, address account) external;
    }

    /// Our reporter contract (`contracts/UptimeReporter.sol`): one call, both rounds, the up
    /// round starting at the including block's own timestamp.
    interface IUptimeReporter {
        function report(uint64 downTimestamp) external;
        function setReporter(address account, bool allowed) external;
        function isReporter(address account) external view returns (bool);
        function feed() external view returns (address);
    }
}

/// The topic of the feed's `AnswerUpdated(int256 indexed current, uint256 indexed roundId,
/// uint256 updatedAt)` event: one per round.
pub const ANSWER_UPDATED: B256 = b256!("0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f");

/// keccak256("FEED_UPDATER_ROLE").
pub const FEED_UPDATER_ROLE: B256 = b256!("2a5eaae4dcc5567b2220ea5152021b46b5fb6cffc0f3a2f4eeb192fcd2fde452");

/// Calldata of `updateStatus(down, timestamp)`; `down = true` means the sequencer is DOWN.
pub fn update_status(down: bool, timestamp: u64) -> Bytes {
    IUptimeFeed::updateStatusCall { status: down, timestamp }.abi_encode().into()
}

/// Decodes `updateStatus` calldata into `(down, timestamp)`.
pub fn decode_update_status(input: &[u8]) -> Option<(bool, u64)> {
    let call = IUptimeFeed::updateStatusCall::abi_decode_validate(input).ok()?;
    Some((call.status, call.timestamp))
}

/// Calldata of the reporter's `report(downTimestamp)`.
pub fn report(down_timestamp: u64) -> Bytes {
    IUptimeReporter::reportCall { downTimestamp: down_timestamp }.abi_encode().into()
}

/// Decodes `report` calldata into its down timestamp.
pub fn decode_report(input: &[u8]) -> Option<u64> {
    Some(IUptimeReporter::reportCall::abi_decode_validate(input).ok()?.downTimestamp)
}

/// Calldata of `hasRole(role, who)`.
pub fn has_role(role: B256, who: Address) -> Bytes {
    IUptimeFeed::hasRoleCall { role, account: who }.abi_encode().into()
}

/// Calldata of `grantRole(role, who)` (the feed admin's call).
pub fn grant_role(role: B256, who: Address) -> Bytes {
    IUptimeFeed::grantRoleCall { role, account: who }.abi_encode().into()
}

/// Calldata of the reporter's `setReporter(who, allowed)` (the reporter admin's call).
pub fn set_reporter(who: Address, allowed: bool) -> Bytes {
    IUptimeReporter::setReporterCall { account: who, allowed }.abi_encode().into()
}

/// Calldata of the reporter's `isReporter(who)`.
pub fn is_reporter(who: Address) -> Bytes {
    IUptimeReporter::isReporterCall { account: who }.abi_encode().into()
}

/// Calldata of the reporter's `feed()`.
pub fn reporter_feed() -> Bytes {
    IUptimeReporter::feedCall {}.abi_encode().into()
}

/// Calldata of `getRoundData(id)`.
pub fn get_round_data(id: u128) -> Bytes {
    IUptimeFeed::getRoundDataCall { _roundId: alloy::primitives::Uint::<80, 2>::saturating_from(id) }
        .abi_encode()
        .into()
}

/// Calldata of `latestRoundData()`.
pub fn latest_round_data() -> Bytes {
    IUptimeFeed::latestRoundDataCall {}.abi_encode().into()
}

/// One round of the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    /// Round id (a `uint80`, kept whole).
    pub round_id: u128,
    /// `true` when the answer is 1 (sequencer down).
    pub down: bool,
    /// When the status began (the caller-supplied timestamp).
    pub started_at: u64,
    /// When the round was last written (block timestamp).
    pub updated_at: u64,
}

/// A round from its ABI fields; `None` if the answer is not a status or a time is not a `u64`.
fn round(round_id: alloy::primitives::Uint<80, 2>, answer: I256, started_at: U256, updated_at: U256) -> Option<Round> {
    let down = if answer.is_zero() {
        false
    } else if answer == I256::ONE {
        true
    } else {
        return None;
    };
    Some(Round {
        round_id: round_id.to::<u128>(),
        down,
        started_at: u64::try_from(started_at).ok()?,
        updated_at: u64::try_from(updated_at).ok()?,
    })
}

/// Decodes `latestRoundData()`'s return data.
pub fn decode_round(data: &[u8]) -> Option<Round> {
    let r = IUptimeFeed::latestRoundDataCall::abi_decode_returns(data).ok()?;
    round(r.roundId, r.answer, r.startedAt, r.updatedAt)
}

/// Decodes `getRoundData()`'s return data.
pub fn decode_round_data(data: &[u8]) -> Option<Round> {
    let r = IUptimeFeed::getRoundDataCall::abi_decode_returns(data).ok()?;
    round(r.roundId, r.answer, r.startedAt, r.updatedAt)
}

/// Decodes a `bool` return value (`hasRole`, `isReporter`).
pub fn decode_bool(data: &[u8]) -> Option<bool> {
    IUptimeFeed::hasRoleCall::abi_decode_returns(data).ok()
}

/// Decodes an `address` return value (the reporter's `feed()`).
pub fn decode_address(data: &[u8]) -> Option<Address> {
    IUptimeReporter::feedCall::abi_decode_returns(data).ok()
}

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    #[test]
    fn selectors_and_role_match_their_definitions() {
        assert_eq!(IUptimeFeed::updateStatusCall::SELECTOR, [0xed, 0x83, 0x78, 0xf5]);
        assert_eq!(IUptimeFeed::latestRoundDataCall::SELECTOR, [0xfe, 0xaf, 0x96, 0x8c]);
        assert_eq!(IUptimeFeed::hasRoleCall::SELECTOR, [0x91, 0xd1, 0x48, 0x54]);
        assert_eq!(grant_role(FEED_UPDATER_ROLE, Address::ZERO)[..4], [0x2f, 0x2f, 0xf1, 0x5d]);
        assert_eq!(get_round_data(7)[..4], [0x9a, 0x6f, 0xc8, 0xf5]);
        assert_eq!(get_round_data(7)[35], 7);
        assert_eq!(keccak256("FEED_UPDATER_ROLE"), FEED_UPDATER_ROLE);
        assert_eq!(keccak256("AnswerUpdated(int256,uint256,uint256)"), ANSWER_UPDATED);
        assert_eq!(report(5).len(), 36);
        assert_eq!(decode_report(&report(1_700_000_000)), Some(1_700_000_000));
    }

    #[test]
    fn update_status_round_trips_and_rejects_garbage() {
        let data = update_status(true, 1_700_000_000);
        assert_eq!(data.len(), 68);
        assert_eq!(decode_update_status(&data), Some((true, 1_700_000_000)));
        assert_eq!(decode_update_status(&update_status(false, 5)), Some((false, 5)));
        assert_eq!(decode_update_status(&data[..67]), None);
        let mut bad = data.to_vec();
        bad[35] = 2;
        assert_eq!(decode_update_status(&bad), None, "a bool word other than 0 or 1");
        assert_eq!(decode_round(&[0u8; 10]), None);
    }

    #[test]
    fn a_round_id_beyond_u64_is_kept_whole_and_a_non_status_answer_is_refused() {
        let ret = |id: u128, answer: i64| {
            let mut out = Vec::new();
            out.extend_from_slice(&U256::from(id).to_be_bytes::<32>());
            out.extend_from_slice(&I256::try_from(answer).unwrap_or_default().to_be_bytes::<32>());
            for v in [10u64, 11, 0] {
                out.extend_from_slice(&U256::from(v).to_be_bytes::<32>());
            }
            out
        };
        let id = (1u128 << 70) + 3;
        assert_eq!(decode_round(&ret(id, 1)), Some(Round { round_id: id, down: true, started_at: 10, updated_at: 11 }));
        assert_eq!(decode_round_data(&ret(2, 0)).map(|r| r.down), Some(false));
        assert_eq!(decode_round(&ret(2, 2)), None);
        assert_eq!(decode_round(&ret(2, -1)), None);
    }
}
