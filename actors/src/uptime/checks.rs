//! The injector's checks and its metrics: the chain id and the report's permissions
//! (preflight), the signer's funds, and what the feed already shows; the per-chain series it
//! writes, all created at zero at start-up.

use std::time::Instant;

use alloy::primitives::{Address, Bytes, U256};
use tracing::{error, info};

use super::{
    feed::{self, Round},
    injector::{INJECTION_RESULTS, InjectError, Injector, Phase, ReportMode},
    ports::{Journal, Node, ReportSigner},
    submit::SUBMISSION_RESULTS,
};
use crate::metrics::{self, Family};

impl<N: Node, S: ReportSigner, J: Journal> Injector<N, S, J> {
    pub(super) fn chain_label(&self) -> String {
        self.cfg.chain.to_string()
    }

    pub(super) fn count(&self, family: &Family) {
        self.metrics.inc(family, &[("chain", self.chain_label().as_str())]);
    }

    pub(super) fn gauge(&self, family: &Family, value: f64) {
        self.metrics.set(family, &[("chain", self.chain_label().as_str())], value);
    }

    pub(super) fn count_endpoint(&self, family: &Family, endpoint: usize, extra: Option<(&'static str, &str)>) {
        let chain = self.chain_label();
        let label = self.node.labels().nth(endpoint).unwrap_or("?").to_owned();
        let mut labels = vec![("chain", chain.as_str()), ("endpoint", label.as_str())];
        labels.extend(extra);
        self.metrics.inc(family, &labels);
    }

    /// Counts the outcome of an outage report (`injections_total{result}`).
    pub(super) fn injection(&self, result: &str) {
        self.metrics.inc(&metrics::INJECTIONS, &[("chain", self.chain_label().as_str()), ("result", result)]);
    }

    /// Creates every per-chain series at zero, so that alerts on `increase()` see the first event.
    pub(super) fn init_metrics(&self) {
        let chain = self.chain_label();
        let labels = [("chain", chain.as_str())];
        for family in [
            &metrics::OUTAGES,
            &metrics::PAIRS_SUBMITTED,
            &metrics::PAIR_REFRESHES,
            &metrics::REPORT_REPRICED,
            &metrics::SUBMIT_ERRORS,
            &metrics::UPTIME_ERRORS,
            &metrics::FEE_CAP_REACHED,
            &metrics::REPORT_OUTBID,
            &metrics::REPORT_REVERTS,
        ] {
            self.metrics.touch(family, &labels);
        }
        for result in INJECTION_RESULTS {
            self.metrics.touch(&metrics::INJECTIONS, &[("chain", chain.as_str()), ("result", result)]);
        }
        for endpoint in self.node.labels() {
            let labels = [("chain", chain.as_str()), ("endpoint", endpoint)];
            self.metrics.touch(&metrics::POOL_LOST, &labels);
            for result in SUBMISSION_RESULTS {
                let labels = [("chain", chain.as_str()), ("endpoint", endpoint), ("result", result)];
                self.metrics.touch(&metrics::SUBMISSIONS, &labels);
            }
        }
        for family in [&metrics::WRONG_CHAIN, &metrics::SIGNER_MISSING_ROLE, &metrics::SIGNER_UNFUNDED] {
            self.metrics.set(family, &labels, 0.0);
        }
    }

    /// What a report may cost, checked while no outage is on: every transaction of it at the
    /// fee cap (where competitors and, in pair mode, refreshes may take it), so the alert fires
    /// before an outage needs the money.
    pub(super) fn planned_cost(&self) -> U256 {
        U256::from(self.cfg.gas_limit) * U256::from(self.cfg.rules.cap) * U256::from(self.cfg.mode.slots())
    }

    /// Reads the signer's balance into `signer_balance_wei`, and while no outage is on, whether
    /// it pays for a report at the configured fees (`signer_unfunded`), so the alert fires before
    /// an outage needs the money.
    pub(super) async fn read_balance(&mut self) -> Result<U256, InjectError> {
        let who = self.signer_address;
        let balance = self.node.balance(who).await?;
        self.gauge(&metrics::SIGNER_BALANCE, f64::from(balance));
        if self.phase == Phase::Idle {
            self.funded(balance, self.planned_cost());
        }
        self.balance_read_at = Some(Instant::now());
        Ok(balance)
    }

    /// The chain id, and the permissions the report needs: the signer's `FEED_UPDATER_ROLE`
    /// (pair), or the reporter's role, its feed and its allowance of the signer (reporter).
    pub(super) async fn preflight(&mut self) -> Result<(), InjectError> {
        if self.preflight_ok {
            return Ok(());
        }
        let chain_id = self.node.chain_id().await?;
        if chain_id != self.cfg.chain {
            self.gauge(&metrics::WRONG_CHAIN, 1.0);
            self.blocked = Some(format!("the L2 node serves chain {chain_id}, not {}", self.cfg.chain));
            error!(target: "uptime", chain = self.cfg.chain, node_chain = chain_id, "the L2 node serves another chain: refusing to inject");
            return Ok(());
        }
        let problem = match self.cfg.mode {
            ReportMode::Pair => (!self.has_role(self.signer_address).await?).then(|| {
                format!("the signer {} lacks FEED_UPDATER_ROLE on the feed {}", self.signer_address, self.cfg.feed)
            }),
            ReportMode::Reporter(reporter) => {
                let data = self.call(reporter, feed::reporter_feed()).await?;
                let its_feed = feed::decode_address(&data).ok_or(InjectError::Contract(reporter))?;
                let data = self.call(reporter, feed::is_reporter(self.signer_address)).await?;
                let allowed = feed::decode_bool(&data).ok_or(InjectError::Contract(reporter))?;
                if its_feed != self.cfg.feed {
                    Some(format!("the reporter {reporter} reports to the feed {its_feed}, not {}", self.cfg.feed))
                } else if !self.has_role(reporter).await? {
                    Some(format!("the reporter {reporter} lacks FEED_UPDATER_ROLE on the feed {}", self.cfg.feed))
                } else if !allowed {
                    Some(format!("the signer {} is not an allowed reporter of {reporter}", self.signer_address))
                } else {
                    None
                }
            }
        };
        self.gauge(&metrics::SIGNER_MISSING_ROLE, if problem.is_some() { 1.0 } else { 0.0 });
        match problem {
            None => {
                if self.permission_problem.take().is_some() {
                    info!(target: "uptime", chain = self.cfg.chain, "the report's permissions are in place again");
                }
                self.preflight_ok = true;
            }
            Some(problem) => {
                // Said once per change, not on every check while it lasts.
                if self.permission_problem.as_ref() != Some(&problem) {
                    error!(target: "uptime", chain = self.cfg.chain, %problem, "the report would revert: not injecting until this is fixed");
                }
                self.permission_problem = Some(problem.clone());
                self.blocked = Some(problem);
            }
        }
        Ok(())
    }

    pub(super) async fn has_role(&self, who: Address) -> Result<bool, InjectError> {
        let data = self.call(self.cfg.feed, feed::has_role(feed::FEED_UPDATER_ROLE, who)).await?;
        feed::decode_bool(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    // --- the feed and the reporter, read from whichever sequencer endpoint answers ---------

    pub(super) async fn call(&self, to: Address, data: Bytes) -> Result<Bytes, InjectError> {
        Ok(self.node.call(to, data).await?)
    }

    pub(super) async fn latest_round(&self) -> Result<Round, InjectError> {
        let data = self.call(self.cfg.feed, feed::latest_round_data()).await?;
        feed::decode_round(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    pub(super) async fn round(&self, id: u128) -> Result<Round, InjectError> {
        let data = self.call(self.cfg.feed, feed::get_round_data(id)).await?;
        feed::decode_round_data(&data).ok_or(InjectError::Contract(self.cfg.feed))
    }

    /// Whether the feed already shows this outage reported in full: its newest round is up
    /// since after the down timestamp, and the round before it down since at or after it. A
    /// lone down round (ours, with the up still to come) is not a report.
    pub(super) async fn feed_shows(&self, down_ts: u64) -> Result<bool, InjectError> {
        let latest = self.latest_round().await?;
        self.reported_since(latest, down_ts).await
    }

    /// [`Self::feed_shows`] with the feed's newest round already read.
    pub(super) async fn reported_since(&self, latest: Round, down_ts: u64) -> Result<bool, InjectError> {
        if latest.down || latest.started_at <= down_ts || latest.round_id < 2 {
            return Ok(false);
        }
        let before = self.round(latest.round_id - 1).await?;
        Ok(before.down && before.started_at >= down_ts)
    }

    /// Whether `balance` pays `need`; says so (once per change) in the log, in
    /// `signer_unfunded`, and to an operator forcing an update.
    pub(super) fn funded(&mut self, balance: U256, need: U256) -> bool {
        let funded = balance >= need;
        if !funded && !self.unfunded {
            error!(target: "uptime", chain = self.cfg.chain, signer = %self.signer_address, %balance, %need, "signer balance below what the report may cost (gas_limit x fees): fund it");
        } else if funded && self.unfunded {
            info!(target: "uptime", chain = self.cfg.chain, %balance, "signer funded again");
        }
        self.unfunded = !funded;
        self.gauge(&metrics::SIGNER_UNFUNDED, if funded { 0.0 } else { 1.0 });
        if !funded {
            self.blocked = Some(format!("the signer {} holds {balance} wei, needs {need}", self.signer_address));
        }
        funded
    }
}
