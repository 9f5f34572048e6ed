//! The start-up checks that a datadir belongs to the configured nodes: the stored chain
//! identities (L1 and each L2: chain id, first recorded block) and `l1.chain_id`, compared before
//! anything is served when the nodes answer in time, else in the background with writes gated.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use rollup_supervisor_actors::rpc::EthRpc;
use rollup_supervisor_storage::{ChainIdentity, ChainsDb, IdentityOf, WriteGate};
use tracing::{debug, info, warn};

use crate::config::Config;

/// How long the start-up identity check waits for the nodes before the servers start anyway: short,
/// so that the endpoints still come up at once when a node hangs (the `servers` test gives them 2 s
/// from launch).
pub const IDENTITY_BOUND: Duration = Duration::from_millis(500);

/// The datadir was recorded from another chain than a configured node serves (exit code 2).
#[derive(Debug)]
pub struct ForeignDatadir {
    /// The datadir.
    pub datadir: PathBuf,
    /// The config key of the node (`l1.rpc_url`, `chains[i].rpc_url`, `l1.chain_id`).
    pub key: String,
    /// What differs, with both values.
    pub differs: String,
}

impl std::fmt::Display for ForeignDatadir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the datadir {} was recorded from another chain than {} names: {}; point {} at the chain this datadir \
             was recorded from, or start with another datadir (refusing to serve it)",
            self.datadir.display(),
            self.key,
            self.differs,
            self.key
        )
    }
}

impl std::error::Error for ForeignDatadir {}

/// One stored chain identity and the node to compare it with.
#[derive(Clone, Debug)]
pub struct IdentityTarget {
    key: String,
    of: IdentityOf,
    rpc: EthRpc,
    stored: ChainIdentity,
}

/// What a node says about a stored identity.
enum Verdict {
    /// The same chain; the node's chain id.
    Same(u64),
    /// Another chain: what differs.
    Foreign(String),
    /// Not known yet: why.
    Unknown(String),
}

/// The identities to compare: L1 always (an empty index gets its chain id stored), each
/// configured L2 chain that has one. A chain id stored for L1 that contradicts `l1.chain_id` is
/// refused at once.
pub fn identity_targets(
    config: &Config,
    db: &ChainsDb,
    l1_rpc: &EthRpc,
    l2_rpcs: &[EthRpc],
) -> anyhow::Result<Vec<IdentityTarget>> {
    let l1 = db.identity(IdentityOf::L1).context("cannot read the L1 identity")?.unwrap_or_default();
    if let (Some(stored), Some(configured)) = (l1.chain_id, config.l1.chain_id)
        && stored != configured
    {
        return Err(ForeignDatadir {
            datadir: config.datadir.clone(),
            key: "l1.chain_id".into(),
            differs: format!("the datadir holds L1 chain id {stored}, l1.chain_id is {configured}"),
        }
        .into());
    }
    let mut targets =
        vec![IdentityTarget { key: "l1.rpc_url".into(), of: IdentityOf::L1, rpc: l1_rpc.clone(), stored: l1 }];
    for (i, (chain, rpc)) in config.chains.iter().zip(l2_rpcs).enumerate() {
        let of = IdentityOf::L2(chain.chain_id);
        if let Some(stored) = db.identity(of).with_context(|| format!("cannot read the identity of {of}"))? {
            targets.push(IdentityTarget { key: format!("chains[{i}].rpc_url"), of, rpc: rpc.clone(), stored });
        }
    }
    Ok(targets)
}

/// Compares one stored identity with its node: the chain id where one is stored, and the hash of
/// the node's block at the stored first height. A node without that block yet is `Unknown`.
async fn compare_identity(t: &IdentityTarget) -> Verdict {
    let chain_id = match t.rpc.chain_id().await {
        Ok(id) => id,
        Err(e) => return Verdict::Unknown(e.to_string()),
    };
    if let Some(stored) = t.stored.chain_id
        && stored != chain_id
    {
        return Verdict::Foreign(format!("the datadir holds chain id {stored}, the node answers chain id {chain_id}"));
    }
    if let Some(first) = t.stored.first {
        match t.rpc.block_by_number(first.number).await {
            Ok(Some(b)) if b.hash == first.hash => {}
            Ok(Some(b)) => {
                return Verdict::Foreign(format!(
                    "{} block #{} is {} in the datadir but {} on the node",
                    t.of, first.number, first.hash, b.hash
                ));
            }
            Ok(None) => return Verdict::Unknown(format!("the node has no block #{} yet", first.number)),
            Err(e) => return Verdict::Unknown(e.to_string()),
        }
    }
    Verdict::Same(chain_id)
}

/// Compares every stored identity with its node, all at once, for at most [`IDENTITY_BOUND`],
/// before the servers bind: a foreign chain is a [`ForeignDatadir`] error. Returns the targets
/// that could not be compared in time; while there are any, the database's write gate is closed
/// (the watchers record nothing) and [`verify_identities_in_background`] goes on. A verified
/// L1 identity without a chain id gets the node's stored.
pub async fn verify_identities_at_start(
    datadir: &Path,
    db: &mut ChainsDb,
    targets: Vec<IdentityTarget>,
) -> anyhow::Result<Vec<IdentityTarget>> {
    let deadline = tokio::time::Instant::now() + IDENTITY_BOUND;
    let handles: Vec<_> = targets
        .into_iter()
        .map(|t| {
            let probe = t.clone();
            (t, actix::spawn(async move { compare_identity(&probe).await }))
        })
        .collect();
    let mut pending = Vec::new();
    for (target, handle) in handles {
        let abort = handle.abort_handle();
        let verdict = match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(e)) => Verdict::Unknown(e.to_string()),
            Err(_) => {
                abort.abort();
                Verdict::Unknown(format!("no answer within {IDENTITY_BOUND:?}"))
            }
        };
        match verdict {
            Verdict::Same(chain_id) => {
                if target.of == IdentityOf::L1 && target.stored.chain_id.is_none() {
                    db.set_l1_chain_id(chain_id).context("cannot store the L1 chain id")?;
                }
                info!(target: "main", of = %target.of, key = %target.key, identity = %target.stored, "chain identity verified");
            }
            Verdict::Foreign(differs) => {
                return Err(ForeignDatadir { datadir: datadir.to_owned(), key: target.key, differs }.into());
            }
            Verdict::Unknown(reason) => {
                warn!(target: "main", of = %target.of, key = %target.key, %reason, "cannot verify the datadir's chain identity yet: serving what is recorded, recording nothing until it is verified, and exiting with code 2 if the node serves another chain");
                pending.push(target);
            }
        }
    }
    if !pending.is_empty() {
        db.write_gate().close();
    }
    Ok(pending)
}

/// Goes on comparing the identities the start could not (backing off from 1 s to 30 s): a
/// foreign chain is a [`ForeignDatadir`] error that stops the process; once every one is
/// verified the write gate opens.
pub async fn verify_identities_in_background(
    datadir: &Path,
    mut pending: Vec<IdentityTarget>,
    gate: &WriteGate,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        let mut still = Vec::new();
        for target in pending {
            match compare_identity(&target).await {
                Verdict::Same(_) => {
                    info!(target: "main", of = %target.of, key = %target.key, identity = %target.stored, "chain identity verified");
                }
                Verdict::Foreign(differs) => {
                    return Err(ForeignDatadir { datadir: datadir.to_owned(), key: target.key, differs }.into());
                }
                Verdict::Unknown(reason) => {
                    debug!(target: "main", of = %target.of, key = %target.key, %reason, "chain identity still unverified");
                    still.push(target);
                }
            }
        }
        if still.is_empty() {
            gate.open();
            info!(target: "main", "every chain identity verified: recording");
            return Ok(());
        }
        pending = still;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Asks the L1 node for its chain id until it answers (backing off from 1 s to 30 s): another
/// chain than `expected` is an error that stops the process. It runs beside the servers and the
/// L1 watcher, so a node that hangs delays nothing; the watcher checks the chain id itself
/// before it records anything (after every restart too).
pub async fn verify_l1_chain_id(rpc: &EthRpc, expected: u64) -> anyhow::Result<()> {
    let mut delay = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match rpc.chain_id().await {
            Ok(got) if got != expected => {
                anyhow::bail!("the L1 node at {} serves chain {got}, but l1.chain_id is {expected}", rpc.endpoint())
            }
            Ok(_) => {
                info!(target: "main", chain = expected, "L1 chain id verified");
                return Ok(());
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!(target: "main", error = %e, retry_in = ?delay, "cannot verify the L1 chain id yet; retrying, and the L1 watcher records nothing before it has verified it");
                } else {
                    debug!(target: "main", error = %e, failures, retry_in = ?delay, "L1 chain id still unverified");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
