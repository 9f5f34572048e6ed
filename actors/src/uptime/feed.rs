//! The sequencer uptime feed's ABI, hand-encoded (three calls do not justify a code generator):
//! `updateStatus(bool,uint64)`, `latestRoundData()`, `hasRole(bytes32,address)`.

use alloy::primitives::{Address, B256, Bytes, U256, b256, keccak256};

/// `updateStatus(bool status, uint64 timestamp)`; `status = true` means the sequencer is DOWN.
pub const UPDATE_STATUS: [u8; 4] = [0xed, 0x83, 0x78, 0xf5];
/// `latestRoundData()`.
pub const LATEST_ROUND_DATA: [u8; 4] = [0xfe, 0xaf, 0x96, 0x8c];
/// `hasRole(bytes32,address)`.
pub const HAS_ROLE: [u8; 4] = [0x91, 0xd1, 0x48, 0x54];
/// keccak256("FEED_UPDATER_ROLE").
pub const FEED_UPDATER_ROLE: B256 = b256!("2a5eaae4dcc5567b2220ea5152021b46b5fb6cffc0f3a2f4eeb192fcd2fde452");

fn word(v: U256) -> [u8; 32] {
    v.to_be_bytes()
}

/// Calldata of `updateStatus(down, timestamp)`.
pub fn update_status(down: bool, timestamp: u64) -> Bytes {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&UPDATE_STATUS);
    out.extend_from_slice(&word(U256::from(u8::from(down))));
    out.extend_from_slice(&word(U256::from(timestamp)));
    out.into()
}

/// Decodes `updateStatus` calldata into `(down, timestamp)`.
pub fn decode_update_status(input: &[u8]) -> Option<(bool, u64)> {
    if input.len() != 68 || input[..4] != UPDATE_STATUS {
        return None;
    }
    let down = flag(U256::from_be_slice(&input[4..36]))?;
    let ts = U256::from_be_slice(&input[36..68]);
    Some((down, u64::try_from(ts).ok()?))
}

/// A status word: 0 (up) or 1 (down); anything else is not a status.
fn flag(word: U256) -> Option<bool> {
    if word.is_zero() {
        Some(false)
    } else if word == U256::from(1) {
        Some(true)
    } else {
        None
    }
}

/// An address as a 32-byte ABI word.
pub fn address_word(who: Address) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[12..].copy_from_slice(who.as_slice());
    out
}

/// Calldata of `selector(role, who)`.
fn role_call(selector: [u8; 4], role: B256, who: Address) -> Bytes {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&selector);
    out.extend_from_slice(role.as_slice());
    out.extend_from_slice(&address_word(who));
    out.into()
}

/// Calldata of `hasRole(role, who)`.
pub fn has_role(role: B256, who: Address) -> Bytes {
    role_call(HAS_ROLE, role, who)
}

/// Calldata of `grantRole(role, who)` (the feed admin's call).
pub fn grant_role(role: B256, who: Address) -> Bytes {
    role_call(selector("grantRole(bytes32,address)"), role, who)
}

/// Calldata of `getRoundData(id)`.
pub fn get_round_data(id: u64) -> Bytes {
    let mut out = selector("getRoundData(uint80)").to_vec();
    out.extend_from_slice(&word(U256::from(id)));
    out.into()
}

/// Calldata of `latestRoundData()`.
pub fn latest_round_data() -> Bytes {
    Bytes::copy_from_slice(&LATEST_ROUND_DATA)
}

/// The feed's latest round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    /// Round id.
    pub round_id: u64,
    /// `true` when the answer is 1 (sequencer down).
    pub down: bool,
    /// When the status began (the caller-supplied timestamp).
    pub started_at: u64,
    /// When the round was last written (block timestamp).
    pub updated_at: u64,
}

/// Decodes `latestRoundData()`'s return data.
pub fn decode_round(data: &[u8]) -> Option<Round> {
    if data.len() < 160 {
        return None;
    }
    let w = |i: usize| U256::from_be_slice(&data[i * 32..(i + 1) * 32]);
    Some(Round {
        round_id: u64::try_from(w(0)).ok()?,
        down: flag(w(1))?,
        started_at: u64::try_from(w(2)).ok()?,
        updated_at: u64::try_from(w(3)).ok()?,
    })
}

/// Decodes a `bool` return value.
pub fn decode_bool(data: &[u8]) -> Option<bool> {
    (data.len() == 32).then(|| !U256::from_be_slice(data).is_zero())
}

/// The 4-byte selector of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_role_match_their_definitions() {
        assert_eq!(selector("updateStatus(bool,uint64)"), UPDATE_STATUS);
        assert_eq!(selector("latestRoundData()"), LATEST_ROUND_DATA);
        assert_eq!(grant_role(FEED_UPDATER_ROLE, Address::ZERO)[..4], [0x2f, 0x2f, 0xf1, 0x5d]);
        assert_eq!(get_round_data(7)[..4], [0x9a, 0x6f, 0xc8, 0xf5]);
        assert_eq!(get_round_data(7)[35], 7);
        assert_eq!(selector("hasRole(bytes32,address)"), HAS_ROLE);
        assert_eq!(keccak256("FEED_UPDATER_ROLE"), FEED_UPDATER_ROLE);
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
        assert_eq!(decode_update_status(&bad), None);
        assert_eq!(decode_round(&[0u8; 10]), None);
    }
}
