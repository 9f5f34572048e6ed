//! How the report is priced and when it is re-signed: plain functions, no I/O.
//!
//! Placement. Every report transaction pays priority fee = max fee, priced above the best
//! pending competitor on both orderings a block builder may use: max fee (anvil) and effective
//! tip `min(tip, max fee - base fee)` (geth, op-geth, reth, Besu). A competitor's tip never
//! exceeds its max fee, so being above every competitor's max fee (and tip) wins both. The
//! margin makes a newcomer pay clearly more than today's best to jump ahead between two checks.
//!
//! Replacement. A pool replaces a pending transaction only for a price bump over it: geth
//! wants ≥ old × (100 + bump) / 100 on both fees, reth wants >, Besu the same on the effective
//! price; [`replacement`] satisfies all three. The bump is applied by us, never left to the
//! node's leniency (anvil takes +1 wei).
//!
//! Refresh (pair mode). The up transaction carries a wall-clock `t_up`; [`refresh_due`] keeps
//! the pooled `t_up` at most `max(⌈refresh⌉ + margin, 10 % of the outage's age)` seconds old,
//! so the number of replacements grows with the logarithm of the outage's length
//! ([`refreshes_for`]), not linearly, and the fee headroom it needs ([`required_cap`]) is known
//! before the outage starts.

use super::pool::Competition;

/// What the pricing rules are made of (from `[chains.uptime]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceRules {
    /// The lowest max fee (`max_fee_per_gas_wei`); also at least twice the base fee.
    pub floor: u128,
    /// Percent above the best competitor (`outbid_margin_percent`).
    pub margin_percent: u128,
    /// The pool's replacement bump, percent (`fee_bump_percent`).
    pub bump_percent: u128,
    /// Never above this (`fee_cap_wei`).
    pub cap: u128,
}

/// The price that sorts first now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Max fee = priority fee, in wei, at most the cap.
    pub price: u128,
    /// A competitor pays the cap or more: the report cannot be priced strictly above it.
    pub outbid_at_cap: bool,
}

impl PriceRules {
    /// The price above every competitor by the margin (at least one wei), at least the floor and
    /// twice the base fee, at most the cap. `competition = None`: the pool is unreadable, so the
    /// configured floor is all we can do.
    pub fn target(&self, base_fee: u128, competition: Option<&Competition>) -> Target {
        let floor = self.floor.max(base_fee.saturating_mul(2));
        let best = competition.map_or(0, Competition::best);
        let above =
            if best == 0 { 0 } else { best.saturating_add((best.saturating_mul(self.margin_percent) / 100).max(1)) };
        Target { price: floor.max(above).min(self.cap), outbid_at_cap: best >= self.cap }
    }

    /// The price of a new signature for a slot whose highest signed price so far is `signed`
    /// (0: never signed): the target, and if something of ours may be pooled for this nonce, a
    /// replacement of it. Above the cap: `None` when a transaction of ours is known to be pooled
    /// (keep it), else the cap itself (after a crash at the cap nothing may be pooled, and a
    /// report at the cap beats no report).
    pub fn resign_price(&self, signed: u128, target: &Target, pooled: bool) -> Option<u128> {
        let min = if signed == 0 { 0 } else { replacement(signed, self.bump_percent) };
        let price = target.price.max(min);
        if price <= self.cap { Some(price) } else { (!pooled).then_some(self.cap) }
    }
}

/// Why a slot of the report is signed (again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No node holds a transaction of ours for it yet.
    New,
    /// A pending competitor reached its price.
    Outbid,
    /// The pair's up transaction is due for a fresh `t_up`.
    Refresh,
}

/// What to do with one slot of the report at a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPlan {
    /// Keep what is pooled (and verify it still is).
    Keep,
    /// Sign it at this price.
    Sign(u128, Why),
    /// It is due, but a replacement would exceed the cap: keep what is pooled.
    Capped(Why),
}

/// One slot as the journal knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The max fee of the pooled transaction, if a node accepted one.
    pub pooled_fee: Option<u128>,
    /// Its up timestamp (the pair's up transaction).
    pub up_ts: Option<u64>,
    /// The highest max fee ever signed for its nonce (0: never).
    pub signed_fee: u128,
}

/// When a refresh is due: the clock, the outage and the schedule's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Wall clock, ms since the epoch.
    pub now_ms: u64,
    /// The outage's down timestamp.
    pub down_ts: u64,
    /// Between checks, ms.
    pub refresh_ms: u64,
    /// `clock_skew_margin_secs`.
    pub margin_secs: u64,
}

impl PriceRules {
    /// The decision for one slot: sign it when no node holds it, when a competitor overtook
    /// it, or when its up timestamp is due for a refresh; at [`Self::resign_price`], or
    /// [`SlotPlan::Capped`] when that would exceed the cap.
    pub fn plan(&self, slot: &Slot, target: &Target, competition: Option<&Competition>, clock: &Clock) -> SlotPlan {
        let why = match slot.pooled_fee {
            None => Why::New,
            Some(fee) if competition.is_some_and(|c| overtaken(fee, c)) => Why::Outbid,
            Some(_)
                if slot.up_ts.is_some_and(|up| {
                    refresh_due(clock.now_ms, up, clock.down_ts, clock.refresh_ms, clock.margin_secs)
                }) =>
            {
                Why::Refresh
            }
            Some(_) => return SlotPlan::Keep,
        };
        match self.resign_price(slot.signed_fee, target, slot.pooled_fee.is_some()) {
            Some(price) => SlotPlan::Sign(price, why),
            None => SlotPlan::Capped(why),
        }
    }
}

/// The lowest price every production pool accepts in place of one of ours priced `old`:
/// `old × (100 + bump) / 100 + 1` (≥ for geth and Besu, > for reth).
pub fn replacement(old: u128, bump_percent: u128) -> u128 {
    old.saturating_mul(100 + bump_percent) / 100 + 1
}

/// Whether a competitor sorts with or ahead of our transaction priced `ours` (tip = max fee)
/// on either ordering.
pub fn overtaken(ours: u128, competition: &Competition) -> bool {
    competition.count > 0 && (competition.max_fee >= ours || competition.tip >= ours)
}

/// The refresh schedule's bound on the pooled `t_up`'s age at wall-clock second `at`:
/// `max(⌈refresh⌉ + margin, 10 % of the outage's age)`, in whole seconds.
pub fn staleness_bound(at: u64, down_ts: u64, refresh_ms: u64, margin_secs: u64) -> u64 {
    (refresh_ms.div_ceil(1000) + margin_secs).max(at.saturating_sub(down_ts) / 10)
}

/// Whether the up transaction must be refreshed at a check at `now_ms` (wall clock, ms): a block
/// built before the next check (at `now_ms + refresh_ms`) would otherwise carry a `t_up` older
/// than [`staleness_bound`].
pub fn refresh_due(now_ms: u64, up_ts: u64, down_ts: u64, refresh_ms: u64, margin_secs: u64) -> bool {
    let next = (now_ms + refresh_ms) / 1000;
    next.saturating_sub(up_ts) > staleness_bound(next, down_ts, refresh_ms, margin_secs)
}

/// The up timestamp signed at `now_ms`: the wall-clock second minus the margin, never before
/// the down timestamp.
pub fn up_ts_at(now_ms: u64, down_ts: u64, margin_secs: u64) -> u64 {
    (now_ms / 1000).saturating_sub(margin_secs).max(down_ts)
}

/// How many refreshes an outage of `max_outage_secs` takes, detected `max_block_age_secs` after
/// its last block and checked every `refresh_ms`.
pub fn refreshes_for(max_block_age_secs: u64, max_outage_secs: u64, refresh_ms: u64, margin_secs: u64) -> u32 {
    let down = 1_000_000_000u64; // any wall-clock second: the schedule depends on ages only
    let mut now = (down + max_block_age_secs + 1) * 1000;
    let end = (down + max_outage_secs) * 1000;
    let mut up = up_ts_at(now, down, margin_secs);
    let mut count = 0;
    while now <= end {
        if refresh_due(now, up, down, refresh_ms, margin_secs) {
            up = up_ts_at(now, down, margin_secs);
            count += 1;
        }
        now += refresh_ms.max(1);
    }
    count
}

/// The fee cap that lets the up transaction, first priced `start`, be refreshed `refreshes` times.
pub fn required_cap(start: u128, refreshes: u32, bump_percent: u128) -> u128 {
    (0..refreshes).fold(start, |p, _| replacement(p, bump_percent))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn rules() -> PriceRules {
        PriceRules { floor: GWEI, margin_percent: 20, bump_percent: 10, cap: 1_000 * GWEI }
    }

    fn users(max_fee: u128, tip: u128) -> Competition {
        Competition { max_fee, tip, count: 1 }
    }

    #[test]
    fn the_target_beats_the_best_competitor_on_max_fee_and_tip_with_the_margin() {
        let r = rules();
        // The case: a user at 80 gwei max fee / 40 gwei tip against our 1 gwei default.
        let t = r.target(0, Some(&users(80 * GWEI, 40 * GWEI)));
        assert_eq!(t, Target { price: 96 * GWEI, outbid_at_cap: false });
        assert!(!overtaken(t.price, &users(80 * GWEI, 40 * GWEI)));
        // A tip-heavy competitor is beaten on the tip too.
        assert_eq!(r.target(0, Some(&Competition { max_fee: 10, tip: 50 * GWEI, count: 1 })).price, 60 * GWEI);
        // No competitor, or an unreadable pool: the floor, and at least twice the base fee.
        assert_eq!(r.target(0, None).price, GWEI);
        assert_eq!(r.target(3 * GWEI, Some(&Competition::default())).price, 6 * GWEI);
        // A competitor below the floor changes nothing; a 1-wei one is beaten by at least 1 wei.
        assert_eq!(r.target(0, Some(&users(5, 5))).price, GWEI);
        let tiny = PriceRules { floor: 1, ..r };
        assert_eq!(tiny.target(0, Some(&users(5, 5))).price, 6);
    }

    #[test]
    fn at_the_cap_the_report_stays_at_the_cap_and_says_it_is_outbid() {
        let r = rules();
        assert_eq!(r.target(0, Some(&users(900 * GWEI, 1))), Target { price: r.cap, outbid_at_cap: false });
        assert_eq!(r.target(0, Some(&users(r.cap, 1))), Target { price: r.cap, outbid_at_cap: true });
        assert_eq!(r.target(0, Some(&users(u128::MAX, u128::MAX))), Target { price: r.cap, outbid_at_cap: true });
    }

    #[test]
    fn a_replacement_pays_the_production_bump_whatever_anvil_would_take() {
        assert_eq!(replacement(100, 10), 111);
        assert_eq!(replacement(GWEI, 10), 1_100_000_001);
        // geth: new ≥ old·110/100; reth: new > old·110/100.
        for old in [1u128, 9, 10, 11, 99, 1_000_003, 40 * GWEI] {
            let new = replacement(old, 10);
            assert!(new * 100 >= old * 110 && new > old * 110 / 100, "{old} -> {new}");
        }
        let r = rules();
        let t = r.target(0, None);
        assert_eq!(r.resign_price(0, &t, false), Some(GWEI), "first signature: the target");
        assert_eq!(r.resign_price(GWEI, &t, true), Some(1_100_000_001), "over our own earlier one");
        assert_eq!(r.resign_price(r.cap, &t, true), None, "never above the cap");
        assert_eq!(r.resign_price(r.cap, &t, false), Some(r.cap), "nothing pooled: at the cap, never above");
        let high = r.target(0, Some(&users(50 * GWEI, 0)));
        assert_eq!(r.resign_price(GWEI, &high, true), Some(60 * GWEI), "the target when it is higher");
    }

    #[test]
    fn a_slot_is_signed_when_new_overtaken_or_due_and_kept_otherwise() {
        let r = rules();
        let down = 1_000_000u64;
        let clock = Clock { now_ms: (down + 100) * 1000, down_ts: down, refresh_ms: 1_000, margin_secs: 1 };
        let quiet = r.target(0, Some(&Competition::default()));
        let fresh = Slot { pooled_fee: Some(GWEI), up_ts: Some(down + 99), signed_fee: GWEI };
        let down_tx = Slot { up_ts: None, ..fresh };
        assert_eq!(r.plan(&fresh, &quiet, Some(&Competition::default()), &clock), SlotPlan::Keep);
        assert_eq!(r.plan(&down_tx, &quiet, None, &clock), SlotPlan::Keep, "an unreadable pool changes nothing");
        // Never accepted: the target, or a replacement of whatever of ours may be pooled.
        let new = Slot { pooled_fee: None, up_ts: None, signed_fee: 0 };
        assert_eq!(r.plan(&new, &quiet, None, &clock), SlotPlan::Sign(GWEI, Why::New));
        let crashed = Slot { signed_fee: 5 * GWEI, ..new };
        assert_eq!(r.plan(&crashed, &quiet, None, &clock), SlotPlan::Sign(replacement(5 * GWEI, 10), Why::New));
        // A user at 80 gwei overtakes both transactions of the pair.
        let user = users(80 * GWEI, 40 * GWEI);
        let t = r.target(0, Some(&user));
        assert_eq!(r.plan(&down_tx, &t, Some(&user), &clock), SlotPlan::Sign(96 * GWEI, Why::Outbid));
        assert_eq!(r.plan(&fresh, &t, Some(&user), &clock), SlotPlan::Sign(96 * GWEI, Why::Outbid));
        // An up timestamp 10 s old at a 100 s outage (bound 10 s) is due; the down one never is.
        let stale = Slot { up_ts: Some(down + 89), ..fresh };
        assert_eq!(r.plan(&stale, &quiet, None, &clock), SlotPlan::Sign(replacement(GWEI, 10), Why::Refresh));
        assert_eq!(r.plan(&Slot { up_ts: None, ..stale }, &quiet, None, &clock), SlotPlan::Keep);
        // At the cap: due, but kept; signed at the cap before a crash and pooled nowhere known:
        // signed at the cap again.
        let at_cap = Slot { signed_fee: r.cap, pooled_fee: Some(r.cap), ..stale };
        assert_eq!(r.plan(&at_cap, &quiet, None, &clock), SlotPlan::Capped(Why::Refresh));
        let lost_at_cap = Slot { pooled_fee: None, ..at_cap };
        assert_eq!(r.plan(&lost_at_cap, &quiet, None, &clock), SlotPlan::Sign(r.cap, Why::New));
    }

    #[test]
    fn overtaken_means_with_or_ahead_on_either_ordering() {
        assert!(!overtaken(100, &Competition::default()));
        assert!(!overtaken(100, &users(99, 99)));
        assert!(overtaken(100, &users(100, 1)), "a tie on max fee is not first");
        assert!(overtaken(100, &users(1_000, 1)), "anvil orders by max fee");
        assert!(overtaken(100, &Competition { max_fee: 99, tip: 100, count: 1 }));
    }

    #[test]
    fn the_schedule_keeps_the_bound_at_every_moment_and_grows_logarithmically() {
        let (refresh, margin, down) = (1_000, 1, 1_000_000u64);
        let mut up = up_ts_at((down + 61) * 1000, down, margin);
        let mut refreshes = 0;
        // A check every refresh interval; a block may come at any millisecond in between.
        let mut now = (down + 61) * 1000;
        while now < (down + 86_400) * 1000 {
            if refresh_due(now, up, down, refresh, margin) {
                up = up_ts_at(now, down, margin);
                refreshes += 1;
            }
            for block_ms in [now + 1, now + refresh / 2, now + refresh - 1] {
                let at = block_ms / 1000;
                assert!(at - up <= staleness_bound(at, down, refresh, margin), "at {at}: t_up {up}");
            }
            now += refresh;
        }
        assert_eq!(refreshes, refreshes_for(60, 86_400, refresh, margin));
        assert!((60..=80).contains(&refreshes), "{refreshes} refreshes for a day");
        assert!(refreshes_for(60, 3_600, refresh, margin) < 45);
        // Short outages with short refreshes refresh every second at first.
        assert!(refreshes_for(3, 30, 100, 1) >= 10);
    }

    #[test]
    fn the_default_cap_covers_a_day_of_refreshes_from_the_default_floor() {
        let n = refreshes_for(60, 86_400, 1_000, 1);
        let need = required_cap(GWEI, n, 10);
        assert!(need <= 1_000 * GWEI, "{n} refreshes need {need}");
        assert!(need > 100 * GWEI);
        assert_eq!(required_cap(100, 2, 10), replacement(replacement(100, 10), 10));
    }
}
