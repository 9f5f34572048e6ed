//! The injector's decisions, driven without a node: the [`Injector`] over hand-written doubles of
//! its ports (`doubles.rs`), stepped through its entry points (`start`, `on_stalled`, `tick`,
//! `on_resumed`) as `TxInjector` steps it, and judged by what it signed, journaled, submitted
//! and counted. The plain functions it uses (pricing, settling, pool parsing) have their own
//! tests next to them; the integration tests (`tests/it/uptime*.rs`) run it against anvil.

mod confirm;
mod doubles;
mod position;

use std::{
    cell::{Ref, RefCell, RefMut},
    rc::Rc,
    time::Duration,
};

use rollup_supervisor_storage::BlockRef;

use self::doubles::{CHAIN, FakeJournal, FakeNode, FakeSigner, LAST, SIGNER, Shared, World};
use super::{
    injector::{INJECTION_RESULTS, Injector, InjectorConfig, ReportMode},
    pricing::PriceRules,
};
use crate::{
    metrics::{self, Family, Metrics},
    uptime::feed,
};

/// 10⁹ wei.
const GWEI: u128 = 1_000_000_000;
/// The fee cap of [`config`].
const CAP: u128 = 1_000 * GWEI;

/// The injector under test.
type TestInjector = Injector<FakeNode, FakeSigner, FakeJournal>;

/// The defaults of `[chains.uptime]` that matter here: floor 1 gwei, margin 20 %, bump 10 %,
/// cap 1000 gwei, three reverts.
fn config(mode: ReportMode) -> InjectorConfig {
    InjectorConfig {
        chain: CHAIN,
        feed: doubles::FEED,
        mode,
        refresh_interval: Duration::from_secs(1),
        clock_skew_margin_secs: 1,
        gas_limit: 100_000,
        rules: PriceRules { floor: GWEI, margin_percent: 20, bump_percent: 10, cap: CAP },
        max_reverts: 3,
    }
}

/// An injector over a world, started as `TxInjector` starts it.
struct Fixture {
    world: Shared,
    injector: TestInjector,
    metrics: Metrics,
    cfg: InjectorConfig,
}

impl Fixture {
    /// A started injector over `world`.
    async fn start(world: World, cfg: InjectorConfig) -> Self {
        Self::started(Rc::new(RefCell::new(world)), cfg).await
    }

    /// The process restarted (after a crash): a new injector, with the same configuration,
    /// over the same world and journal, started.
    async fn restart(self) -> Self {
        let Self { world, injector, metrics: _, cfg } = self;
        drop(injector);
        Self::started(world, cfg).await
    }

    async fn started(world: Shared, cfg: InjectorConfig) -> Self {
        let metrics = Metrics::default();
        let mut injector = Injector::new(
            cfg.clone(),
            FakeNode::new(&world),
            FakeSigner(world.clone()),
            SIGNER,
            FakeJournal(world.clone()),
            metrics.clone(),
        );
        injector.start().await.expect("start");
        Self { world, injector, metrics, cfg }
    }

    /// A started pair-mode injector with `endpoints` endpoints.
    async fn pair(endpoints: usize) -> Self {
        Self::start(World::new(endpoints), config(ReportMode::Pair)).await
    }

    /// The world, to change (never held across an await).
    fn w(&self) -> RefMut<'_, World> {
        self.world.borrow_mut()
    }

    /// The world, to read.
    fn r(&self) -> Ref<'_, World> {
        self.world.borrow()
    }

    fn last_block(&self) -> BlockRef {
        self.r().block_ref(LAST)
    }

    /// `SequencerStalled` after [`LAST`].
    async fn stall(&mut self) {
        let last = self.last_block();
        self.injector.on_stalled(last).await.expect("stalled");
    }

    /// `SequencerResumed` after [`LAST`].
    async fn resume(&mut self) {
        let last = self.last_block();
        self.injector.on_resumed(last).await.expect("resumed");
    }

    /// A check tick.
    async fn tick(&mut self) {
        self.injector.tick().await.expect("tick");
    }

    /// A per-chain series.
    fn value(&self, family: &Family) -> f64 {
        self.metrics.get(family, &[("chain", "10")])
    }

    /// A per-endpoint series, with its extra label.
    fn at(&self, family: &Family, endpoint: &str, extra: Option<(&str, &str)>) -> f64 {
        let mut labels = vec![("chain", "10"), ("endpoint", endpoint)];
        labels.extend(extra);
        self.metrics.get(family, &labels)
    }

    /// `injections_total{result}`.
    fn injections(&self, result: &str) -> f64 {
        self.metrics.get(&metrics::INJECTIONS, &[("chain", "10"), ("result", result)])
    }

    /// Asserts that `expected` outcomes, and no others, were counted.
    fn assert_injections(&self, expected: &[&str]) {
        for result in INJECTION_RESULTS {
            let want = expected.iter().filter(|r| **r == result).count() as f64;
            assert_eq!(self.injections(result), want, "injections_total{{result=\"{result}\"}}");
        }
    }
}

/// The `(down, timestamp)` an `updateStatus` transaction carries.
fn status_of(input: &[u8]) -> (bool, u64) {
    feed::decode_update_status(input).expect("updateStatus calldata")
}
