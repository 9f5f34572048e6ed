//! [`ChainsDb`]: the L1 index and the per-chain derivation logs, on one sled database.
//!
//! In files by job: this one opens the database and holds what every operation shares (the
//! trees, the atomic [`WriteSet`] commit, row lookups); `l1` is the canonical L1 index (append,
//! read, rewind), `derivation` writes the derivation logs, `queries` reads them. The safe and
//! finalized heads are in `crate::heads`, the chain identities in `crate::identity`.

mod derivation;
mod l1;
mod queries;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use sled::{Batch, Transactional, Tree};
use tracing::{info, warn};

use crate::{
    BlockRef, ChainId, ChainMode, Result, Side, StorageError,
    codec::{self, ChainState},
    heads::Held,
    identity::WriteGate,
};

/// The canonical L1 index and one derivation log per L2 chain.
///
/// A chain's derivation log is the sequence of pairs `(source L1, derived L2)` in which, from one
/// entry to the next, exactly one side advances by exactly one parent-linked block. It is stored
/// compactly and losslessly: one row per derived L2 block holding the L1 number it was first
/// derived from, plus the chain's *head*, the L1 block the log has advanced to. The entries where
/// only L1 advances (`NewL1 : ExistingL2`) cost no row at all; their source side is the L1 index.
///
/// Every write is validated in full before anything is written, committed in one sled
/// transaction across all trees it touches, and flushed before the call returns.
/// `&mut self` on writes makes this value the single writer.
///
/// The safe and finalized L1 heads are stored only as recorded blocks; see the `heads` module
/// ([`Self::set_heads`]).
pub struct ChainsDb {
    db: sled::Db,
    /// Where it lives (`None`: in memory), for [`crate::DurableDb`] to reopen it.
    path: Option<PathBuf>,
    meta: Tree,
    l1: Tree,
    chains: Tree,
    l2: BTreeMap<ChainId, Tree>,
    outages: Tree,
    /// Heads held in memory until the index reaches them, and head notes not yet taken.
    pub(crate) held: Held,
    /// Closed while the supervisor has not compared the stored identities with the nodes.
    pub(crate) gate: WriteGate,
}

impl std::fmt::Debug for ChainsDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainsDb").field("chains", &self.l2.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// The writes of one operation, applied atomically by [`ChainsDb::commit`].
#[derive(Default)]
pub(crate) struct WriteSet {
    pub(crate) meta: Batch,
    l1: Batch,
    chains: Batch,
    l2: BTreeMap<ChainId, Batch>,
}

impl WriteSet {
    fn l2(&mut self, chain: ChainId) -> &mut Batch {
        self.l2.entry(chain).or_default()
    }
}

/// A chain's tip as validation sees it: its head and its last derived block.
#[derive(Clone, Copy, Debug)]
struct ChainTip {
    state: ChainState,
    last: Option<(BlockRef, u64)>,
}

impl ChainsDb {
    /// Opens (or creates) the database in `path` for the supervisor: safe and finalized heads
    /// that break the head invariants (stored by an earlier build from a node that lied) are
    /// repaired first, each with a warn log; see [`Self::repair_heads`]. A database of an
    /// earlier build gets the chain identities from its first rows, each with an info log; see
    /// [`Self::migrate_identities`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let mut db = Self::open_as_is(path)?;
        for migration in db.migrate_identities()? {
            info!(
                target: "storage",
                of = %migration.of,
                identity = %migration.identity,
                "stored the chain identity from the first recorded block (database of an earlier build)"
            );
        }
        for repair in db.repair_heads()? {
            warn!(
                target: "storage",
                head = repair.head.as_str(),
                from = ?repair.from,
                to = ?repair.to,
                reason = %repair.reason,
                "repaired an L1 head that broke the head invariants (stored unchecked by an earlier build)"
            );
        }
        Ok(db)
    }

    /// Opens (or creates) the database in `path` and changes nothing in it (`db check`, `db
    /// inspect`): a poisoned head stays as it is, for [`Self::check`] to report.
    pub fn open_as_is(path: impl AsRef<Path>) -> Result<Self> {
        let db = sled::Config::new().path(path.as_ref()).open()?;
        Self::from_sled(db, Some(path.as_ref().to_owned()))
    }

    /// Opens a database that lives in memory only (for tests and benchmarks).
    pub fn temporary() -> Result<Self> {
        Self::from_sled(sled::Config::new().temporary(true).open()?, None)
    }

    fn from_sled(db: sled::Db, path: Option<PathBuf>) -> Result<Self> {
        let meta = db.open_tree("meta")?;
        match meta.get(codec::META_SCHEMA)? {
            None => {
                meta.insert(codec::META_SCHEMA, &codec::SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let bytes: [u8; 4] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| codec::corrupt("meta", codec::META_SCHEMA, "schema version is not 4 bytes"))?;
                let found = u32::from_be_bytes(bytes);
                if found != codec::SCHEMA_VERSION {
                    return Err(StorageError::UnsupportedSchema { found, supported: codec::SCHEMA_VERSION });
                }
            }
        }
        let l1 = db.open_tree("l1")?;
        let chains = db.open_tree("chains")?;
        let mut l2 = BTreeMap::new();
        for row in chains.iter() {
            let (key, _) = row?;
            let chain = codec::decode_num_key("chains", &key)?;
            l2.insert(chain, db.open_tree(codec::l2_tree_name(chain))?);
        }
        let outages = db.open_tree("outages")?;
        Ok(Self { db, path, meta, l1, chains, l2, outages, held: Held::default(), gate: WriteGate::default() })
    }

    /// Registers a chain (idempotent). A registered chain's mode may be changed.
    pub fn add_chain(&mut self, chain: ChainId, mode: ChainMode) -> Result<()> {
        let state = match self.chain_state(chain) {
            Ok(state) => ChainState { mode, ..state },
            Err(StorageError::UnknownChain(_)) => ChainState::new(mode),
            Err(e) => return Err(e),
        };
        let tree = self.db.open_tree(codec::l2_tree_name(chain))?;
        self.l2.insert(chain, tree);
        let mut ws = WriteSet::default();
        ws.chains.insert(&codec::num_key(chain), &state.encode()[..]);
        self.commit(ws)
    }

    /// The directory it lives in (`None`: in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The registered chains, in order.
    pub fn chains(&self) -> Vec<ChainId> {
        self.l2.keys().copied().collect()
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes everything to disk (every write already does; this is for shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    // ---- internals ------------------------------------------------------------------------

    pub(crate) fn outages_tree(&self) -> &Tree {
        &self.outages
    }

    /// The raw `meta` value at `key`.
    pub(crate) fn raw_meta(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.meta.get(key)?)
    }

    pub(crate) fn trees(&self) -> (&sled::Db, &Tree, &Tree, &Tree, &BTreeMap<ChainId, Tree>) {
        (&self.db, &self.meta, &self.l1, &self.chains, &self.l2)
    }

    fn check_source(&self, source: &BlockRef) -> Result<()> {
        match self.l1_block(source.number)? {
            Some(stored) if stored.hash == source.hash => Ok(()),
            Some(stored) => Err(StorageError::Conflict {
                side: Side::L1,
                number: source.number,
                stored: stored.hash,
                incoming: source.hash,
            }),
            None => Err(self.unknown_l1(source.number)),
        }
    }

    fn unknown_l1(&self, number: u64) -> StorageError {
        let range = match (self.first_l1(), self.latest_l1()) {
            (Ok(Some(a)), Ok(Some(b))) => format!("{}..={}", a.number, b.number),
            _ => "none".to_owned(),
        };
        StorageError::UnknownL1 { number, range }
    }

    fn gap(&self, chain: ChainId, number: u64) -> StorageError {
        codec::corrupt(&codec::l2_tree_name(chain), &codec::num_key(number), "missing row inside the log")
    }

    fn l2_tree(&self, chain: ChainId) -> Result<Tree> {
        self.l2.get(&chain).cloned().ok_or(StorageError::UnknownChain(chain))
    }

    fn l2_row(&self, chain: ChainId, number: u64) -> Result<Option<(BlockRef, u64)>> {
        let key = codec::num_key(number);
        let name = codec::l2_tree_name(chain);
        self.l2_tree(chain)?.get(key)?.map(|v| codec::decode_l2(&name, &key, &v)).transpose()
    }

    fn first_l2_row(&self, chain: ChainId, tree: &Tree) -> Result<(BlockRef, u64)> {
        let (k, v) = tree.first()?.ok_or(StorageError::EmptyChain(chain))?;
        codec::decode_l2(&codec::l2_tree_name(chain), &k, &v)
    }

    fn chain_state(&self, chain: ChainId) -> Result<ChainState> {
        let key = codec::num_key(chain);
        let v = self.chains.get(key)?.ok_or(StorageError::UnknownChain(chain))?;
        ChainState::decode(&key, &v)
    }

    fn chain_states(&self) -> Result<Vec<(ChainId, ChainState)>> {
        self.chains
            .iter()
            .map(|row| {
                let (k, v) = row?;
                Ok((codec::decode_num_key("chains", &k)?, ChainState::decode(&k, &v)?))
            })
            .collect()
    }

    fn chain_tip(&self, chain: ChainId) -> Result<ChainTip> {
        let state = self.chain_state(chain)?;
        let name = codec::l2_tree_name(chain);
        let last = self.l2_tree(chain)?.last()?.map(|(k, v)| codec::decode_l2(&name, &k, &v)).transpose()?;
        Ok(ChainTip { state, last })
    }

    /// Applies `ws` in one transaction over every tree it touches, then flushes.
    pub(crate) fn commit(&self, ws: WriteSet) -> Result<()> {
        let mut trees: Vec<&Tree> = vec![&self.meta, &self.l1, &self.chains];
        let mut batches = vec![ws.meta, ws.l1, ws.chains];
        for (chain, batch) in ws.l2 {
            trees.push(self.l2.get(&chain).ok_or(StorageError::UnknownChain(chain))?);
            batches.push(batch);
        }
        trees
            .as_slice()
            .transaction(|txs| {
                for (tx, batch) in txs.iter().zip(&batches) {
                    tx.apply_batch(batch)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StorageError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StorageError::Sled(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.db.flush()?;
        Ok(())
    }
}
