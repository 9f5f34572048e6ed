//! Hand-written doubles of the injector's ports over one shared in-memory [`World`]: a chain
//! (blocks, receipts, the signer's nonce, the feed's rounds and roles), one pool per endpoint,
//! the signer and the journal. Tests set the world up, drive the injector, and read back what
//! it asked, signed, journaled and sent, in order ([`World::events`]).

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::{
    consensus::{SignableTransaction, Signed, TxEip1559, TxEnvelope},
    eips::eip2718::Decodable2718,
    primitives::{Address, B256, Bytes, Signature, U64, U256},
};
use rollup_supervisor_storage::{BlockRef, ChainId, OutageRecord};

use crate::{
    rpc::{RpcError, RpcLog, RpcReceipt, RpcTx},
    uptime::{
        feed::{self, Round},
        injector::InjectError,
        pool::{Competition, PoolView},
        ports::{Journal, Node, ReportSigner},
        signer_actor::SignError,
        submit::{PoolError, Submitted},
    },
};

/// The L2 chain the injector serves.
pub(super) const CHAIN: ChainId = 10;
/// The signer account.
pub(super) const SIGNER: Address = Address::repeat_byte(0x51);
/// The uptime feed.
pub(super) const FEED: Address = Address::repeat_byte(0xfe);
/// Another sender.
pub(super) const USER: Address = Address::repeat_byte(0x77);
/// The last block before the gap.
pub(super) const LAST: u64 = 100;
/// The signer's transaction count before the outage.
pub(super) const NONCE: u64 = 7;

/// What the injector did, in order.
#[derive(Clone, Debug)]
pub(super) enum Event {
    /// It had this transaction signed.
    Signed(TxEip1559),
    /// It journaled this record.
    Journaled(OutageRecord),
    /// It submitted this transaction to the endpoints at `to`.
    Submitted { tx: TxEip1559, hash: B256, to: Vec<usize> },
}

/// A transaction in a mined block, with its receipt's status and the feed answers it emitted.
#[derive(Clone, Debug)]
pub(super) struct Mined {
    pub tx: RpcTx,
    pub ok: bool,
    /// The `current` of each `AnswerUpdated` it emitted: 1 down, 0 up.
    pub answers: Vec<u8>,
}

impl Mined {
    /// A transaction that succeeded and emitted these feed answers.
    pub fn ok(tx: RpcTx, answers: &[u8]) -> Self {
        Self { tx, ok: true, answers: answers.to_vec() }
    }

    /// A transaction that reverted.
    pub fn reverted(tx: RpcTx) -> Self {
        Self { tx, ok: false, answers: Vec::new() }
    }
}

/// The chain, its endpoints, the signer and the journal.
#[derive(Debug)]
pub(super) struct World {
    /// The chain id the node serves.
    pub chain_id: u64,
    /// Every read fails (the node is down).
    pub down: bool,
    pub base_fee: Option<u128>,
    pub balance: U256,
    /// The newest block.
    pub head: u64,
    /// The transactions of non-empty blocks.
    pub blocks: BTreeMap<u64, Vec<RpcTx>>,
    pub receipts: HashMap<B256, RpcReceipt>,
    /// The node has no receipts yet (a lagging replica).
    pub hide_receipts: bool,
    /// The node answers every historical nonce with the count before the gap (a lagging replica).
    pub hide_nonce_history: bool,
    /// The blocks `nonce_at` was asked about, in order.
    pub nonce_asked: Vec<u64>,
    /// The feed's rounds, round id `i + 1` at index `i`.
    pub rounds: Vec<Round>,
    /// Holders of `FEED_UPDATER_ROLE`.
    pub roles: HashSet<Address>,
    /// Reporter contracts: their feed and whether the signer is an allowed reporter.
    pub reporters: HashMap<Address, (Address, bool)>,
    /// What each endpoint's pool shows of others' transactions.
    pub pools: Vec<Result<PoolView, PoolError>>,
    /// The hashes each endpoint's pool holds.
    pub pooled: Vec<HashSet<B256>>,
    /// Each endpoint's pooled transaction of ours per nonce: its hash, max fee and tip. A pool
    /// replaces it only for more than a bump of [`POOL_BUMP_PERCENT`] on both: the strictest of
    /// geth (at least the bump), reth (above it) and Besu; anvil takes +1 wei.
    pub by_nonce: Vec<HashMap<u64, (B256, u128, u128)>>,
    /// Endpoints that refuse every submission as a transport failure.
    pub refusing: HashSet<usize>,
    /// Scripted answers to the next submissions, one per endpoint asked (else the pools decide).
    pub answers: VecDeque<Vec<Submitted>>,
    /// The signer fails.
    pub signer_down: bool,
    /// The journal refuses every write (a full disk).
    pub journal_down: bool,
    /// The journal, oldest first.
    pub journal: Vec<OutageRecord>,
    pub events: Vec<Event>,
    /// Wall-clock second of block 0; block `n` is 2 s later per block.
    pub genesis_ts: u64,
}

impl World {
    /// A healthy chain stalled after block [`LAST`] 1000 s ago, the signer funded and
    /// holding the role, `endpoints` empty pools, the feed up since long before.
    pub fn new(endpoints: usize) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let genesis_ts = now - 1_000 - 2 * LAST;
        Self {
            chain_id: CHAIN,
            down: false,
            base_fee: Some(1),
            balance: U256::from(10u128.pow(20)),
            head: LAST,
            blocks: BTreeMap::new(),
            receipts: HashMap::new(),
            hide_receipts: false,
            hide_nonce_history: false,
            nonce_asked: Vec::new(),
            rounds: vec![Round { round_id: 1, down: false, started_at: genesis_ts, updated_at: genesis_ts }],
            roles: HashSet::from([SIGNER]),
            reporters: HashMap::new(),
            pools: vec![Ok(PoolView::default()); endpoints],
            pooled: vec![HashSet::new(); endpoints],
            by_nonce: vec![HashMap::new(); endpoints],
            refusing: HashSet::new(),
            answers: VecDeque::new(),
            signer_down: false,
            journal_down: false,
            journal: Vec::new(),
            events: Vec::new(),
            genesis_ts,
        }
    }

    /// Block `number`.
    pub fn block_ref(&self, number: u64) -> BlockRef {
        BlockRef {
            hash: B256::from(U256::from(number + 1)),
            number,
            parent_hash: B256::from(U256::from(number)),
            timestamp: self.genesis_ts + 2 * number,
        }
    }

    /// The down timestamp of the outage after [`LAST`].
    pub fn down_ts(&self) -> u64 {
        self.block_ref(LAST).timestamp
    }

    /// Every endpoint's pool shows this best competitor.
    pub fn compete(&mut self, max_fee: u128, tip: u128) {
        let competition = Competition { max_fee, tip, count: 1 };
        for pool in &mut self.pools {
            *pool = Ok(PoolView { competition });
        }
    }

    /// The signer's transaction count after block `number`.
    fn count_at(&self, number: u64) -> u64 {
        let mined = self.blocks.range(..=number).flat_map(|(_, txs)| txs).filter(|t| t.from == SIGNER).count();
        NONCE + mined as u64
    }

    /// Mines the next block with `txs`, in order; returns its number.
    pub fn mine(&mut self, txs: Vec<Mined>) -> u64 {
        self.head += 1;
        let number = self.head;
        for (index, m) in txs.iter().enumerate() {
            let logs = m
                .answers
                .iter()
                .map(|a| RpcLog {
                    address: FEED,
                    topics: vec![crate::uptime::feed::ANSWER_UPDATED, B256::with_last_byte(*a)],
                })
                .collect();
            let receipt = RpcReceipt {
                status: Some(U64::from(u64::from(m.ok))),
                block_number: Some(U64::from(number)),
                transaction_index: Some(U64::from(index)),
                logs,
            };
            self.receipts.insert(m.tx.hash, receipt);
            for pool in &mut self.pooled {
                pool.remove(&m.tx.hash);
            }
        }
        self.blocks.insert(number, txs.into_iter().map(|m| m.tx).collect());
        number
    }

    /// Mines `n` empty blocks.
    pub fn skip(&mut self, n: u64) {
        self.head += n;
    }

    /// Another sender writes a full report of this outage to the feed (down, then up).
    pub fn reported_by_another_sender(&mut self) {
        let down_ts = self.down_ts();
        let id = self.rounds.len() as u128;
        self.rounds.push(Round { round_id: id + 1, down: true, started_at: down_ts, updated_at: down_ts + 900 });
        self.rounds.push(Round { round_id: id + 2, down: false, started_at: down_ts + 900, updated_at: down_ts + 900 });
    }

    /// What was signed, in order.
    pub fn signed(&self) -> Vec<TxEip1559> {
        self.events.iter().filter_map(|e| if let Event::Signed(tx) = e { Some(tx.clone()) } else { None }).collect()
    }

    /// What was submitted, in order: the transaction, its hash and the endpoints.
    pub fn submitted(&self) -> Vec<(TxEip1559, B256, Vec<usize>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Submitted { tx, hash, to } => Some((tx.clone(), *hash, to.clone())),
                _ => None,
            })
            .collect()
    }

    /// The newest journaled record.
    pub fn last_record(&self) -> OutageRecord {
        self.journal.last().cloned().expect("a journaled outage")
    }

    /// The newest transaction submitted with `nonce`, as a block would carry it.
    pub fn sent(&self, nonce: u64) -> RpcTx {
        let (tx, hash, _) =
            self.submitted().into_iter().rev().find(|(tx, ..)| tx.nonce == nonce).expect("a submitted transaction");
        RpcTx {
            hash,
            from: SIGNER,
            nonce: U64::from(tx.nonce),
            to: tx.to.to().copied(),
            tx_type: Some(U64::from(2)),
            input: tx.input,
        }
    }

    fn read<T>(&self, value: impl FnOnce(&Self) -> T) -> Result<T, RpcError> {
        if self.down {
            return Err(RpcError::Unreachable { endpoint: "l2".into(), reason: "connection refused".into() });
        }
        Ok(value(self))
    }

    fn call(&self, to: Address, data: &[u8]) -> Result<Bytes, RpcError> {
        let word = |v: U256| v.to_be_bytes::<32>();
        let encode_round = |r: &Round| {
            let words = [
                U256::from(r.round_id),
                U256::from(u8::from(r.down)),
                U256::from(r.started_at),
                U256::from(r.updated_at),
                U256::from(r.round_id),
            ];
            Bytes::from(words.iter().flat_map(|w| word(*w)).collect::<Vec<u8>>())
        };
        let selector = |calldata: Bytes| calldata[..4].to_vec();
        let argument = |i: usize| data.get(4 + 32 * i..4 + 32 * (i + 1)).map(U256::from_be_slice);
        let address = |i: usize| argument(i).map(|v| Address::from_word(B256::from(v)));
        let boolean = |b: bool| Bytes::from(word(U256::from(u8::from(b))).to_vec());
        let revert = || RpcError::BadAnswer { endpoint: "l2".into(), reason: "execution reverted".into() };
        let head = data.get(..4).map(<[u8]>::to_vec).ok_or_else(revert)?;
        if to == FEED {
            if head == selector(feed::latest_round_data()) {
                return self.rounds.last().map(encode_round).ok_or_else(revert);
            }
            if head == selector(feed::get_round_data(0)) {
                let id = argument(0).ok_or_else(revert)?.to::<usize>();
                return id.checked_sub(1).and_then(|i| self.rounds.get(i)).map(encode_round).ok_or_else(revert);
            }
            if head == selector(feed::has_role(B256::ZERO, Address::ZERO)) {
                return Ok(boolean(self.roles.contains(&address(1).ok_or_else(revert)?)));
            }
        }
        if let Some((its_feed, allows_signer)) = self.reporters.get(&to) {
            if head == selector(feed::reporter_feed()) {
                return Ok(Bytes::from(its_feed.into_word().to_vec()));
            }
            if head == selector(feed::is_reporter(Address::ZERO)) {
                return Ok(boolean(*allows_signer && address(0) == Some(SIGNER)));
            }
        }
        Err(revert())
    }

    fn submit(&mut self, raw: &Bytes, which: &[usize]) -> Vec<Submitted> {
        let Ok(TxEnvelope::Eip1559(signed)) = TxEnvelope::decode_2718(&mut raw.as_ref()) else {
            panic!("the injector submits EIP-1559 transactions");
        };
        let (tx, hash) = (signed.tx().clone(), *signed.hash());
        let scripted = self.answers.pop_front();
        let mined = tx.nonce < self.count_at(self.head);
        let answers = which
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                if let Some(answer) = scripted.as_ref().and_then(|s| s.get(k)) {
                    if answer.pooled() {
                        self.pool(i, &tx, hash);
                    }
                    answer.clone()
                } else if self.refusing.contains(&i) {
                    Submitted::Failed("connection refused".into())
                } else if mined {
                    Submitted::NonceTooLow
                } else if self.pooled[i].contains(&hash) {
                    Submitted::AlreadyKnown
                } else if self.by_nonce[i].get(&tx.nonce).is_some_and(|&(held, fee, tip)| {
                    let bumped = |old: u128| old * (100 + POOL_BUMP_PERCENT) / 100;
                    self.pooled[i].contains(&held)
                        && (tx.max_fee_per_gas <= bumped(fee) || tx.max_priority_fee_per_gas <= bumped(tip))
                }) {
                    Submitted::Underpriced
                } else {
                    self.pool(i, &tx, hash);
                    Submitted::Accepted(hash)
                }
            })
            .collect();
        self.events.push(Event::Submitted { tx, hash, to: which.to_vec() });
        answers
    }

    /// Endpoint `i` pools `tx` under `hash`, in place of what it held of ours for the nonce.
    fn pool(&mut self, i: usize, tx: &TxEip1559, hash: B256) {
        let entry = (hash, tx.max_fee_per_gas, tx.max_priority_fee_per_gas);
        if let Some((replaced, ..)) = self.by_nonce[i].insert(tx.nonce, entry)
            && replaced != hash
        {
            self.pooled[i].remove(&replaced);
        }
        self.pooled[i].insert(hash);
    }
}

/// The price bump a production pool demands of a replacement, on the max fee and on the tip.
pub(super) const POOL_BUMP_PERCENT: u128 = 10;

/// The shared world, as each port sees it.
pub(super) type Shared = Rc<RefCell<World>>;

/// The sequencer endpoints: `rpc`, `submit_0`, ...
#[derive(Clone, Debug)]
pub(super) struct FakeNode {
    pub world: Shared,
    pub labels: Vec<String>,
}

impl FakeNode {
    /// The world's endpoints, labelled as the binary labels them.
    pub fn new(world: &Shared) -> Self {
        let n = world.borrow().pooled.len();
        let labels = (0..n).map(|i| if i == 0 { "rpc".into() } else { format!("submit_{}", i - 1) }).collect();
        Self { world: world.clone(), labels }
    }
}

/// The signer: signs anything with a fixed signature (the injector never recovers it).
#[derive(Clone, Debug)]
pub(super) struct FakeSigner(pub Shared);

/// The journal.
#[derive(Clone, Debug)]
pub(super) struct FakeJournal(pub Shared);

impl Node for FakeNode {
    fn labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(String::as_str)
    }

    fn endpoints(&self) -> usize {
        self.labels.len()
    }

    async fn chain_id(&self) -> Result<u64, RpcError> {
        self.world.borrow().read(|w| w.chain_id)
    }

    async fn head(&self) -> Result<Option<BlockRef>, RpcError> {
        self.world.borrow().read(|w| Some(w.block_ref(w.head)))
    }

    async fn block(&self, number: u64) -> Result<Option<BlockRef>, RpcError> {
        self.world.borrow().read(|w| (number <= w.head).then(|| w.block_ref(number)))
    }

    async fn block_transactions(&self, number: u64) -> Result<Option<Vec<RpcTx>>, RpcError> {
        self.world.borrow().read(|w| (number <= w.head).then(|| w.blocks.get(&number).cloned().unwrap_or_default()))
    }

    async fn receipt(&self, hash: B256) -> Result<Option<RpcReceipt>, RpcError> {
        self.world.borrow().read(|w| if w.hide_receipts { None } else { w.receipts.get(&hash).cloned() })
    }

    async fn base_fee(&self) -> Result<Option<u128>, RpcError> {
        self.world.borrow().read(|w| w.base_fee)
    }

    async fn balance(&self, who: Address) -> Result<U256, RpcError> {
        self.world.borrow().read(|w| if who == SIGNER { w.balance } else { U256::ZERO })
    }

    async fn nonce(&self, who: Address) -> Result<u64, RpcError> {
        assert_eq!(who, SIGNER);
        self.world.borrow().read(|w| w.count_at(w.head))
    }

    async fn nonce_at(&self, who: Address, number: u64) -> Result<u64, RpcError> {
        assert_eq!(who, SIGNER);
        let mut w = self.world.borrow_mut();
        w.nonce_asked.push(number);
        w.read(|w| if w.hide_nonce_history { w.count_at(LAST) } else { w.count_at(number) })
    }

    async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, RpcError> {
        let w = self.world.borrow();
        w.read(|_| ())?;
        w.call(to, &data)
    }

    async fn pools(&self, _ours: Address) -> Vec<Result<PoolView, PoolError>> {
        self.world.borrow().pools.clone()
    }

    async fn knows(&self, hash: B256) -> Vec<Option<bool>> {
        let w = self.world.borrow();
        let mined = w.receipts.contains_key(&hash);
        w.pooled
            .iter()
            .enumerate()
            .map(|(i, p)| (!w.refusing.contains(&i)).then(|| mined || p.contains(&hash)))
            .collect()
    }

    async fn submit(&self, raw: &Bytes, which: &[usize]) -> Vec<Submitted> {
        self.world.borrow_mut().submit(raw, which)
    }
}

impl ReportSigner for FakeSigner {
    async fn sign(&self, tx: TxEip1559) -> Result<Signed<TxEip1559>, SignError> {
        let mut w = self.0.borrow_mut();
        if w.signer_down {
            return Err(SignError::Timeout(Duration::from_secs(10)));
        }
        w.events.push(Event::Signed(tx.clone()));
        Ok(tx.into_signed(Signature::new(U256::from(1), U256::from(2), false)))
    }
}

impl Journal for FakeJournal {
    async fn last_outage(&self, chain: ChainId) -> Result<Option<OutageRecord>, InjectError> {
        Ok(self.0.borrow().journal.iter().rev().find(|r| r.chain == chain).cloned())
    }

    async fn put_outage(&self, record: &OutageRecord) -> Result<(), InjectError> {
        let mut w = self.0.borrow_mut();
        if w.journal_down {
            return Err(InjectError::Journal("the database is closed since the disk failed".into()));
        }
        w.journal.push(record.clone());
        w.events.push(Event::Journaled(record.clone()));
        Ok(())
    }
}

/// A transaction of another sender.
pub(super) fn user_tx(i: u8) -> RpcTx {
    RpcTx {
        hash: B256::repeat_byte(i),
        from: USER,
        nonce: U64::from(i),
        to: Some(USER),
        tx_type: Some(U64::from(2)),
        input: Bytes::new(),
    }
}

/// An OP Stack deposit transaction (which a sequencer puts first in a block).
pub(super) fn deposit_tx() -> RpcTx {
    RpcTx { tx_type: Some(U64::from(0x7e)), hash: B256::repeat_byte(0xde), ..user_tx(0) }
}

/// A transaction of the signer at `nonce` that is not the report (a twin instance's, an operator's).
pub(super) fn other_signer_tx(nonce: u64) -> RpcTx {
    RpcTx {
        hash: B256::from(U256::from(0xabc0 + nonce)),
        from: SIGNER,
        nonce: U64::from(nonce),
        to: Some(USER),
        tx_type: Some(U64::from(2)),
        input: Bytes::new(),
    }
}
