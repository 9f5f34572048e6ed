//! The on-disk row formats. All integers are big-endian so that sled's byte order is numeric
//! order. Every decoder checks the exact length and returns [`StorageError::Corrupt`], never
//! panics.
//!
//! | tree | key | value | bytes (key + value) |
//! |---|---|---|---|
//! | `meta` | `schema` | `u32` version | |
//! | `meta` | `safe`, `finalized` | number ‖ hash ‖ parent ‖ timestamp | |
//! | `meta` | `identity/l1`, `identity/l2/` ‖ chain id | flags ‖ chain id ‖ first number ‖ first hash (see `identity`) | 49 |
//! | `l1` | number | hash ‖ parent ‖ timestamp | 8 + 72 = 80 |
//! | `chains` | chain id | mode ‖ finished ‖ has-head ‖ head number | 8 + 11 |
//! | `l2/<chain id>` | L2 number | hash ‖ parent ‖ timestamp ‖ source L1 number | 8 + 80 = 88 |

use alloy::primitives::B256;

use crate::{BlockRef, ChainId, ChainMode, StorageError};

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: u32 = 1;

pub(crate) const META_SCHEMA: &[u8] = b"schema";
pub(crate) const META_SAFE: &[u8] = b"safe";
pub(crate) const META_FINALIZED: &[u8] = b"finalized";

/// Size of an `l1` value.
pub(crate) const L1_VALUE_LEN: usize = 72;
/// Size of an `l2/<chain>` value.
pub(crate) const L2_VALUE_LEN: usize = 80;
const HEAD_LEN: usize = 80;
const CHAIN_STATE_LEN: usize = 11;

pub(crate) fn l2_tree_name(chain: ChainId) -> String {
    format!("l2/{chain}")
}

pub(crate) fn num_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn corrupt(tree: &str, key: &[u8], reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt { tree: tree.to_owned(), key: alloy::hex::encode_prefixed(key), reason: reason.into() }
}

pub(crate) fn decode_num_key(tree: &str, key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] =
        key.try_into().map_err(|_| corrupt(tree, key, format!("key is {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(buf)
}

fn check_len(tree: &str, key: &[u8], value: &[u8], len: usize) -> Result<(), StorageError> {
    if value.len() == len {
        Ok(())
    } else {
        Err(corrupt(tree, key, format!("value is {} bytes, expected {len}", value.len())))
    }
}

/// An `l1` row value.
pub(crate) fn encode_l1(block: &BlockRef) -> [u8; L1_VALUE_LEN] {
    let mut out = [0u8; L1_VALUE_LEN];
    out[..32].copy_from_slice(block.hash.as_slice());
    out[32..64].copy_from_slice(block.parent_hash.as_slice());
    out[64..].copy_from_slice(&block.timestamp.to_be_bytes());
    out
}

pub(crate) fn decode_l1(key: &[u8], value: &[u8]) -> Result<BlockRef, StorageError> {
    let number = decode_num_key("l1", key)?;
    check_len("l1", key, value, L1_VALUE_LEN)?;
    Ok(BlockRef {
        number,
        hash: B256::from_slice(&value[..32]),
        parent_hash: B256::from_slice(&value[32..64]),
        timestamp: u64_at(value, 64),
    })
}

/// A head in `meta` (safe, finalized): the full reference, since it may lie outside the index.
pub(crate) fn encode_head(block: &BlockRef) -> [u8; HEAD_LEN] {
    let mut out = [0u8; HEAD_LEN];
    out[..8].copy_from_slice(&block.number.to_be_bytes());
    out[8..].copy_from_slice(&encode_l1(block));
    out
}

pub(crate) fn decode_head(key: &[u8], value: &[u8]) -> Result<BlockRef, StorageError> {
    check_len("meta", key, value, HEAD_LEN)?;
    decode_l1(&value[..8], &value[8..]).map_err(|_| corrupt("meta", key, "malformed head"))
}

/// An `l2/<chain>` row: the derived L2 block and the number of the L1 block it was derived from.
pub(crate) fn encode_l2(block: &BlockRef, source: u64) -> [u8; L2_VALUE_LEN] {
    let mut out = [0u8; L2_VALUE_LEN];
    out[..L1_VALUE_LEN].copy_from_slice(&encode_l1(block));
    out[L1_VALUE_LEN..].copy_from_slice(&source.to_be_bytes());
    out
}

pub(crate) fn decode_l2(tree: &str, key: &[u8], value: &[u8]) -> Result<(BlockRef, u64), StorageError> {
    check_len(tree, key, value, L2_VALUE_LEN)?;
    let block = decode_l1(key, &value[..L1_VALUE_LEN]).map_err(|_| corrupt(tree, key, "malformed L2 row"))?;
    Ok((block, u64_at(value, L1_VALUE_LEN)))
}

/// A chain's state in the `chains` tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainState {
    pub mode: ChainMode,
    /// Explicit mode: the chain said it has finished with `head`.
    pub finished: bool,
    /// The L1 block the chain's log has advanced to; `None` while the log is empty.
    pub head: Option<u64>,
}

impl ChainState {
    pub fn new(mode: ChainMode) -> Self {
        Self { mode, finished: false, head: None }
    }

    /// Whether a new L1 block `number` extends this chain with `NewL1 : ExistingL2`.
    pub fn extends_with(&self, number: u64) -> bool {
        let finished = match self.mode {
            ChainMode::FollowsL1 => true,
            ChainMode::Explicit => self.finished,
        };
        finished && self.head.and_then(|h| h.checked_add(1)) == Some(number)
    }

    pub fn encode(&self) -> [u8; CHAIN_STATE_LEN] {
        let mut out = [0u8; CHAIN_STATE_LEN];
        out[0] = match self.mode {
            ChainMode::FollowsL1 => 0,
            ChainMode::Explicit => 1,
        };
        out[1] = u8::from(self.finished);
        if let Some(head) = self.head {
            out[2] = 1;
            out[3..].copy_from_slice(&head.to_be_bytes());
        }
        out
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, StorageError> {
        check_len("chains", key, value, CHAIN_STATE_LEN)?;
        let mode = match value[0] {
            0 => ChainMode::FollowsL1,
            1 => ChainMode::Explicit,
            other => {
                return Err(corrupt("chains", key, format!("unknown chain mode {other}")));
            }
        };
        let flag = |byte: u8, what: &str| match byte {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt("chains", key, format!("{what} flag is {other}"))),
        };
        let finished = flag(value[1], "finished")?;
        let head = flag(value[2], "head")?.then(|| u64_at(value, 3));
        Ok(Self { mode, finished, head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u64) -> BlockRef {
        BlockRef { number: n, hash: B256::repeat_byte(1), parent_hash: B256::repeat_byte(2), timestamp: 99 }
    }

    #[test]
    fn rows_round_trip() {
        let b = block(u64::MAX);
        assert_eq!(decode_l1(&num_key(b.number), &encode_l1(&b)).ok(), Some(b));
        assert_eq!(decode_head(META_SAFE, &encode_head(&b)).ok(), Some(b));
        assert_eq!(decode_l2("l2/1", &num_key(b.number), &encode_l2(&b, 7)).ok(), Some((b, 7)));
        for state in [
            ChainState::new(ChainMode::FollowsL1),
            ChainState { mode: ChainMode::Explicit, finished: true, head: Some(42) },
        ] {
            assert_eq!(ChainState::decode(&num_key(1), &state.encode()).ok(), Some(state));
        }
    }

    #[test]
    fn malformed_rows_are_corrupt_errors() {
        assert!(matches!(decode_l1(&[1, 2], &[0; 72]), Err(StorageError::Corrupt { .. })));
        assert!(matches!(decode_l1(&num_key(1), &[0; 71]), Err(StorageError::Corrupt { .. })));
        assert!(matches!(decode_l2("l2/1", &num_key(1), &[0; 72]), Err(StorageError::Corrupt { .. })));
        assert!(matches!(decode_head(META_SAFE, &[0; 3]), Err(StorageError::Corrupt { .. })));
        let mut bad = ChainState::new(ChainMode::FollowsL1).encode();
        bad[0] = 9;
        assert!(matches!(ChainState::decode(&num_key(1), &bad), Err(StorageError::Corrupt { .. })));
        bad[0] = 0;
        bad[2] = 5;
        assert!(matches!(ChainState::decode(&num_key(1), &bad), Err(StorageError::Corrupt { .. })));
    }
}
