//! [`ChainsDb::check`]: a full scan that verifies every invariant the writers promise.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    BlockRef, ChainId, ChainsDb, HeadKind, Result,
    codec::{self, ChainState},
};

/// What [`ChainsDb::check`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Rows in the L1 index.
    pub l1_rows: u64,
    /// L2 rows per chain.
    pub chain_rows: BTreeMap<ChainId, u64>,
    /// Every broken invariant, each a precise sentence. Empty when the database is sound.
    pub problems: Vec<String>,
    /// Whether some of the problems are safe/finalized heads that break the head invariants,
    /// which [`ChainsDb::repair_heads`] repairs without a resync.
    pub heads_need_repair: bool,
}

impl CheckReport {
    /// Whether every invariant holds.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl ChainsDb {
    /// Scans the whole database and verifies every invariant: rows decode, the L1 index is
    /// contiguous and parent-linked, the safe and finalized heads are each the recorded block at
    /// their height (so never above the newest one) and finalized is not above safe, and each
    /// chain's log is contiguous,
    /// parent-linked, derived from recorded L1 blocks in non-decreasing order, and no further than
    /// its head. Only a failure to read at all is an `Err`; broken invariants are reported.
    pub fn check(&self) -> Result<CheckReport> {
        let (db, meta, l1, chains, l2) = self.trees();
        let mut report = CheckReport::default();
        let problems = &mut report.problems;

        let mut first: Option<BlockRef> = None;
        let mut prev: Option<BlockRef> = None;
        for row in l1.iter() {
            let (k, v) = row?;
            report.l1_rows += 1;
            let block = match codec::decode_l1(&k, &v) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(e.to_string());
                    prev = None;
                    continue;
                }
            };
            if let Some(p) = prev
                && !block.is_child_of(&p)
            {
                problems.push(if block.number != p.number + 1 {
                    format!("L1 index has a gap: block {} follows block {}", block.number, p.number)
                } else {
                    format!(
                        "L1 block {} has parent {} but block {} is {}",
                        block.number, block.parent_hash, p.number, p.hash
                    )
                });
            }
            first.get_or_insert(block);
            prev = Some(block);
        }
        let latest = prev;
        let in_index = |n: u64| first.is_some_and(|f| n >= f.number) && latest.is_some_and(|l| n <= l.number);

        let mut heads = [None, None];
        for (slot, head) in heads.iter_mut().zip([HeadKind::Safe, HeadKind::Finalized]) {
            let Some(raw) = meta.get(head.key())? else {
                continue;
            };
            let block = match codec::decode_head(head.key(), &raw) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("{head} head does not decode: {e}"));
                    report.heads_need_repair = true;
                    continue;
                }
            };
            *slot = Some(block);
            let place = match self.place(&block) {
                Ok(p) => p,
                // A row the scan above already reported as corrupt.
                Err(_) => continue,
            };
            if let Some(problem) = place.problem() {
                problems.push(format!("{head} head {block} {problem}"));
                report.heads_need_repair = true;
            }
        }
        match heads {
            [Some(safe), Some(finalized)] if safe.number < finalized.number => {
                problems.push(format!("safe head {} is below the finalized head {}", safe.number, finalized.number));
                report.heads_need_repair = true;
            }
            [None, Some(finalized)] => {
                problems.push(format!("finalized head {} is set but there is no safe head", finalized.number));
                report.heads_need_repair = true;
            }
            _ => {}
        }

        let mut registered = Vec::new();
        for row in chains.iter() {
            let (k, v) = row?;
            let chain = match codec::decode_num_key("chains", &k) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            registered.push(chain);
            let state = match ChainState::decode(&k, &v) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let Some(tree) = l2.get(&chain) else {
                problems.push(format!("chain {chain} is registered but has no log tree"));
                continue;
            };
            let rows = self.check_chain(chain, state, tree, &in_index, problems)?;
            report.chain_rows.insert(chain, rows);
        }
        self.check_identities(problems)?;
        for row in self.outages_tree().iter() {
            let (k, v) = row?;
            if let Err(e) = crate::outage::decode(&k, &v) {
                problems.push(e.to_string());
            }
        }
        for name in db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if let Some(id) = name.strip_prefix("l2/")
                && !id.parse::<ChainId>().is_ok_and(|id| registered.contains(&id))
            {
                problems.push(format!("tree {name} belongs to no registered chain"));
            }
        }
        Ok(report)
    }

    fn check_chain(
        &self,
        chain: ChainId,
        state: ChainState,
        tree: &sled::Tree,
        in_index: &dyn Fn(u64) -> bool,
        problems: &mut Vec<String>,
    ) -> Result<u64> {
        let name = codec::l2_tree_name(chain);
        let mut rows = 0;
        let mut prev: Option<(BlockRef, u64)> = None;
        for row in tree.iter() {
            let (k, v) = row?;
            rows += 1;
            let (block, source) = match codec::decode_l2(&name, &k, &v) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(e.to_string());
                    prev = None;
                    continue;
                }
            };
            if let Some((p, p_source)) = prev {
                if block.number != p.number + 1 {
                    problems
                        .push(format!("chain {chain}: log has a gap: L2 block {} follows {}", block.number, p.number));
                } else if block.parent_hash != p.hash {
                    problems.push(format!(
                        "chain {chain}: L2 block {} has parent {} but block {} is {}",
                        block.number, block.parent_hash, p.number, p.hash
                    ));
                }
                if source < p_source {
                    problems.push(format!(
                        "chain {chain}: L2 block {} derived from L1 {} before block {} derived from L1 {}",
                        block.number, source, p.number, p_source
                    ));
                }
            }
            if !in_index(source) {
                problems.push(format!(
                    "chain {chain}: L2 block {} derived from L1 block {source}, which is not in the L1 index",
                    block.number
                ));
            }
            if state.head.is_none_or(|h| source > h) {
                problems.push(format!(
                    "chain {chain}: L2 block {} derived from L1 block {source}, beyond the chain's head {:?}",
                    block.number, state.head
                ));
            }
            prev = Some((block, source));
        }
        match state.head {
            Some(head) if !in_index(head) => {
                problems.push(format!("chain {chain}: head L1 block {head} is not in the L1 index"));
            }
            Some(head) if rows == 0 => {
                problems.push(format!("chain {chain}: head is L1 block {head} but the log is empty"))
            }
            _ => {}
        }
        Ok(rows)
    }
}
