//! The uptime flow's journal: one record per sequencer outage of each chain, so that a restart
//! mid-outage neither loses nor duplicates the update pair. Rows are small JSON documents keyed
//! by chain id ‖ down timestamp (both big-endian).

use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};

use crate::{BlockRef, ChainId, ChainsDb, Result, StorageError, codec};

/// What became of an outage's update pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum OutageResult {
    /// The outage is on; the pair is (being) pre-positioned.
    Pending,
    /// The pair landed: `first` when at indices 0 and 1 of the first block after the gap.
    Landed {
        /// Whether it landed first in the first block after the gap.
        first: bool,
    },
    /// The feed already showed this outage (another instance, or an earlier run).
    AlreadyReported,
    /// Something failed; the pair is retried with the original down timestamp.
    Failed {
        /// What failed.
        reason: String,
    },
}

/// One signed transaction of an outage's report that a node accepted into its pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportTx {
    /// Its hash.
    pub hash: B256,
    /// The signed EIP-2718 bytes, re-submitted unchanged after a pool loss or a restart.
    pub raw: Bytes,
    /// Its max fee per gas (= its priority fee), in wei.
    pub max_fee_per_gas: u128,
    /// The up timestamp it carries (the pair's up transaction only).
    pub up_ts: Option<u64>,
}

/// The report of an earlier outage that a new outage superseded before it landed: pools may
/// still hold it at the nonces the new report takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Superseded {
    /// Nonce of its first transaction.
    pub nonce: u64,
    /// The highest max fee it signed for each of its slots, from `nonce` on.
    pub signed_fees: Vec<u128>,
}

/// One outage of one chain's sequencer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutageRecord {
    /// The L2 chain.
    pub chain: ChainId,
    /// The last block before the gap; its timestamp is the down timestamp.
    pub last_block: BlockRef,
    /// The reporter contract the report goes to; `None`: the pair to the feed. A restart with
    /// another mode re-signs the report at the same nonces.
    #[serde(default)]
    pub reporter: Option<Address>,
    /// Nonce of the report's first transaction (the pair's up transaction has `nonce + 1`).
    pub nonce: Option<u64>,
    /// The report's transactions a node accepted, by slot: `[down, up]` for the pair,
    /// `[report]` for a reporter call. `None` until a node accepts that slot.
    #[serde(default)]
    pub txs: Vec<Option<ReportTx>>,
    /// The highest max fee ever signed for each slot, written *before* the transaction is
    /// submitted: whatever of ours a pool may hold (after a crash, or from a twin instance),
    /// a replacement priced above this replaces it.
    #[serde(default)]
    pub signed_fees: Vec<u128>,
    /// The superseded report of an earlier outage, until this report's nonces are chosen: its
    /// first signatures then pay the pools' bump over what that one signed for each nonce
    /// they share. Journaled with the outage, so a crash or a failed first signature keeps it.
    #[serde(default)]
    pub superseded: Option<Superseded>,
    /// The up timestamp: of the pooled up transaction, then of the landed one.
    pub up_ts: Option<u64>,
    /// The hashes of the report as it landed, in block order.
    #[serde(default)]
    pub landed_txs: Vec<B256>,
    /// The block that included the report.
    pub included_in: Option<u64>,
    /// Reports of this outage that reverted on chain.
    #[serde(default)]
    pub reverts: u32,
    /// A competitor outbid the fee cap in this outage (logged and counted once).
    #[serde(default)]
    pub outbid_at_cap: bool,
    /// A refresh or replacement was stopped by the fee cap in this outage (counted once).
    #[serde(default)]
    pub fee_cap_reached: bool,
    /// The outcome so far.
    pub result: OutageResult,
}

impl OutageRecord {
    /// A new record for an outage that began after `last_block`.
    pub fn new(chain: ChainId, last_block: BlockRef) -> Self {
        Self {
            chain,
            last_block,
            reporter: None,
            nonce: None,
            txs: Vec::new(),
            signed_fees: Vec::new(),
            superseded: None,
            up_ts: None,
            landed_txs: Vec::new(),
            included_in: None,
            reverts: 0,
            outbid_at_cap: false,
            fee_cap_reached: false,
            result: OutageResult::Pending,
        }
    }

    /// The down timestamp.
    pub fn down_ts(&self) -> u64 {
        self.last_block.timestamp
    }

    /// The hashes of the accepted (pooled) report transactions, in slot order.
    pub fn pooled_hashes(&self) -> Vec<B256> {
        self.txs.iter().flatten().map(|t| t.hash).collect()
    }

    /// Whether every slot of an `slots`-transaction report has been accepted by a node.
    pub fn fully_pooled(&self, slots: usize) -> bool {
        self.txs.len() == slots && self.txs.iter().all(Option::is_some)
    }
}

fn key(chain: ChainId, down_ts: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&chain.to_be_bytes());
    k[8..].copy_from_slice(&down_ts.to_be_bytes());
    k
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<OutageRecord> {
    let record: OutageRecord =
        serde_json::from_slice(value).map_err(|e| codec::corrupt("outages", key, format!("bad outage record: {e}")))?;
    let expected = self::key(record.chain, record.down_ts());
    if key != expected {
        return Err(codec::corrupt("outages", key, "outage record stored under another key"));
    }
    Ok(record)
}

impl ChainsDb {
    /// Writes (or replaces) an outage record, flushed before returning.
    pub fn put_outage(&mut self, record: &OutageRecord) -> Result<()> {
        let value = serde_json::to_vec(record).map_err(|e| StorageError::Corrupt {
            tree: "outages".into(),
            key: String::new(),
            reason: e.to_string(),
        })?;
        self.outages_tree().insert(key(record.chain, record.down_ts()), value)?;
        self.flush()
    }

    /// The newest outage record of `chain`.
    pub fn last_outage(&self, chain: ChainId) -> Result<Option<OutageRecord>> {
        let tree = self.outages_tree();
        let last = tree.range(key(chain, 0)..=key(chain, u64::MAX)).next_back().transpose()?;
        last.map(|(k, v)| decode(&k, &v)).transpose()
    }

    /// Every outage record of `chain`, oldest first.
    pub fn outages(&self, chain: ChainId) -> Result<Vec<OutageRecord>> {
        self.outages_tree()
            .range(key(chain, 0)..=key(chain, u64::MAX))
            .map(|row| {
                let (k, v) = row?;
                decode(&k, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_newest_is_last() {
        let dir = tempfile::tempdir().unwrap();
        let block = |ts| BlockRef { number: ts, hash: B256::ZERO, parent_hash: B256::ZERO, timestamp: ts };
        {
            let mut db = crate::tests::when_unlocked(|| ChainsDb::open(dir.path()));
            assert_eq!(db.last_outage(1).unwrap(), None);
            let mut a = OutageRecord::new(1, block(100));
            db.put_outage(&a).unwrap();
            db.put_outage(&OutageRecord::new(1, block(200))).unwrap();
            db.put_outage(&OutageRecord::new(2, block(300))).unwrap();
            a.result = OutageResult::Landed { first: true };
            a.landed_txs = vec![B256::repeat_byte(1), B256::repeat_byte(2)];
            db.put_outage(&a).unwrap();
        }
        let db = crate::tests::when_unlocked(|| ChainsDb::open(dir.path()));
        assert_eq!(db.last_outage(1).unwrap().map(|r| r.down_ts()), Some(200));
        let all = db.outages(1).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].result, OutageResult::Landed { first: true });
        assert!(db.check().unwrap().is_ok());
    }
}
