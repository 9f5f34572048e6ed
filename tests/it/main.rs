//! End-to-end tests: the real `rollup-supervisor` binary against real `anvil` nodes.
//! One test binary with modules (see `harness` for the node and proxy helpers).

mod harness;
mod supervisor;

mod chains;
mod derivation;
mod devnet;
mod disk;
mod faults;
mod heads;
mod identity;
mod l1;
mod memory;
mod operator;
mod secrets;
mod servers;
mod uptime;
mod uptime_crash;
mod uptime_pool;
