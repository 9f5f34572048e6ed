//! `rollup-supervisor`: one process beside an L1 node and L2 nodes that follows L1 into a sled
//! database (the canonical L1 index and one derivation log per L2 chain) and serves it over
//! JSON-RPC.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM) or a passing `db check`; 2 on an
//! invalid configuration or command line, or a datadir recorded from another chain than the
//! configured nodes serve; 1 on any fatal runtime error: a start-up failure, a
//! failing `db check`, a shutdown that overran its bound, or a panic anywhere in the process
//! (logged first, so the OS supervisor restarts us rather than leaving a half-dead process).

mod config;
mod datadir;
mod devnet;
mod http;
mod identity;
mod node;
#[cfg(test)]
mod reference;
mod rpc;

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use rollup_supervisor_storage::ChainsDb;

use crate::config::Config;

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code after a panic: a fatal runtime error like any other.
const EXIT_PANIC: i32 = 1;

#[derive(Debug, Parser)]
#[command(name = "rollup-supervisor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the supervisor.
    Run(RunArgs),
    /// Inspect or verify a database (the supervisor must not be running on it).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// A demo with nothing to configure: starts L1 and L2 anvil nodes, deploys the uptime feed
    /// and our reporter (`--pair`: no reporter), runs the supervisor on them, stages sequencer
    /// outages with a user paying more than our defaults, and prints what happens.
    Devnet(devnet::DevnetArgs),
    /// Admin tokens for the JSON-RPC admin methods.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
}

#[derive(Debug, Subcommand)]
enum JwtCommand {
    /// Print a token signed with the secret, valid for 60 seconds either side of now; send it as
    /// `Authorization: Bearer <token>`.
    Token {
        /// The secret file (`rpc.jwt_secret_file`): 64 hex digits.
        #[arg(long)]
        secret_file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The TOML configuration file.
    #[arg(long, env = "ROLLUP_SUPERVISOR_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `l1.rpc_url`.
    #[arg(long, env = "ROLLUP_SUPERVISOR_L1_RPC_URL")]
    l1_rpc_url: Option<String>,
    /// Overrides `datadir`.
    #[arg(long, env = "ROLLUP_SUPERVISOR_DATADIR")]
    datadir: Option<PathBuf>,
    /// Overrides `rpc.listen`.
    #[arg(long, env = "ROLLUP_SUPERVISOR_RPC_LISTEN")]
    rpc_listen: Option<std::net::SocketAddr>,
    /// Overrides `metrics.listen`.
    #[arg(long, env = "ROLLUP_SUPERVISOR_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    log: LogArgs,
}

/// How the process logs (to stderr).
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, env = "ROLLUP_SUPERVISOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Which events to log, as `RUST_LOG` takes it (`info`, `warn,uptime=debug`, ...); `RUST_LOG`
    /// itself is read when this is not given.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Verify every invariant; exit 0 if all hold, 1 with one line per problem otherwise.
    Check {
        /// The database directory.
        #[arg(long)]
        datadir: PathBuf,
    },
    /// Repair the safe and finalized L1 heads: each must be the recorded block at its height
    /// and finalized must not be above safe. A head that is not is removed (safe: lowered to
    /// finalized), safe below finalized is raised to it; prints each change. The supervisor also
    /// does this when it starts; the next heads poll asks the node again.
    RepairHeads {
        /// The database directory.
        #[arg(long)]
        datadir: PathBuf,
    },
    /// Print the heads, the L1 rows and each chain's derivation log.
    Inspect {
        /// The database directory.
        #[arg(long)]
        datadir: PathBuf,
        /// Print JSON (the only format for now).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
        Command::Devnet(args) => devnet::run(args),
        Command::Db { command: DbCommand::Check { datadir } } => db_check(&datadir),
        Command::Db { command: DbCommand::RepairHeads { datadir } } => db_repair_heads(&datadir),
        Command::Db { command: DbCommand::Inspect { datadir, json: _ } } => db_inspect(&datadir),
        Command::Jwt { command: JwtCommand::Token { secret_file } } => jwt_token(&secret_file),
    }
}

fn jwt_token(secret_file: &std::path::Path) -> ExitCode {
    match rpc::read_secret(secret_file).and_then(|secret| rpc::token(&secret)) {
        Ok(token) => {
            let _ = writeln!(std::io::stdout(), "{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollup-supervisor: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rollup-supervisor: invalid configuration: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (signers, admin) = match build_signers(&config).and_then(|s| Ok((s, rpc::Admin::from_config(&config.rpc)?))) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("rollup-supervisor: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = init_logging(&args.log) {
        eprintln!("rollup-supervisor: invalid --log-filter: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    install_panic_hook();
    tracing::info!(target: "main", version = env!("CARGO_PKG_VERSION"), config = %config.redacted(), "effective configuration");
    if let Err(e) = datadir::check(&config.datadir) {
        tracing::error!(target: "main", error = %e, "exiting");
        eprintln!("rollup-supervisor: {e}");
        return ExitCode::FAILURE;
    }
    match node::run(config, signers, admin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "main", error = format!("{e:#}"), "exiting");
            eprintln!("rollup-supervisor: {e:#}");
            if e.downcast_ref::<identity::ForeignDatadir>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The signer of every chain with uptime reporting enabled.
fn build_signers(
    config: &Config,
) -> Result<std::collections::BTreeMap<u64, rollup_supervisor_signer::Signer>, config::ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for (i, chain) in config.chains.iter().enumerate() {
        if chain.uptime.enabled {
            out.insert(chain.chain_id, chain.uptime.signer.build(&format!("chains[{i}].uptime.signer"))?);
        }
    }
    Ok(out)
}

fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(url) = &args.l1_rpc_url {
        config.l1.rpc_url = url.clone();
    }
    if let Some(dir) = &args.datadir {
        config.datadir = dir.clone();
    }
    if let Some(listen) = args.rpc_listen {
        config.rpc.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    config.validate()?;
    Ok(config)
}

/// The filter directive that keeps alloy's per-request spans, which name the full URL, out of
/// the log.
const NO_URL_SPANS: &str = "alloy_transport_http=info";

/// Logs to stderr in the chosen format; fails on a filter that does not parse.
pub fn init_logging(args: &LogArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter).map_err(|e| e.to_string())?;
    // alloy's HTTP transport opens a debug span carrying the full request URL (an API key in
    // its path or query) around every request: never below info, whatever the filter says.
    let filter = filter.add_directive(NO_URL_SPANS.parse().map_err(|e| format!("{NO_URL_SPANS}: {e}"))?);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
    Ok(())
}

/// A panic anywhere (an actor handler, the RPC server, the database thread) ends the process
/// with [`EXIT_PANIC`] after logging it: actix does not restart an actor whose arbiter panicked,
/// and a process with a dead arbiter would look alive while doing nothing. Every write is
/// flushed before it is acknowledged, so nothing acknowledged is lost.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(target: "main", %thread, %location, message = %payload, "panic: exiting so the process supervisor restarts us");
        eprintln!("rollup-supervisor: panic in thread {thread} at {location}: {payload}; exiting");
        std::process::exit(EXIT_PANIC);
    }));
}

fn open_db(datadir: &std::path::Path) -> Result<ChainsDb, ExitCode> {
    if !datadir.exists() {
        eprintln!("rollup-supervisor: no database at {}", datadir.display());
        return Err(ExitCode::FAILURE);
    }
    if let Err(e) = datadir::check(datadir) {
        eprintln!("rollup-supervisor: {e}");
        return Err(ExitCode::FAILURE);
    }
    // As it is on disk: `check` reports a poisoned head, `repair-heads` repairs it.
    ChainsDb::open_as_is(datadir).map_err(|e| {
        eprintln!("rollup-supervisor: cannot open the database at {}: {e}", datadir.display());
        ExitCode::FAILURE
    })
}

fn db_check(datadir: &std::path::Path) -> ExitCode {
    let db = match open_db(datadir) {
        Ok(db) => db,
        Err(code) => return code,
    };
    print_identities(&db);
    match db.check() {
        Ok(report) if report.is_ok() => {
            let _ = writeln!(
                std::io::stdout(),
                "ok: {} L1 rows, {} chains, {} derivation rows; every invariant holds",
                report.l1_rows,
                report.chain_rows.len(),
                report.chain_rows.values().sum::<u64>()
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for problem in &report.problems {
                let _ = writeln!(std::io::stdout(), "problem: {problem}");
            }
            eprintln!("rollup-supervisor: {} invariant violation(s) in {}", report.problems.len(), datadir.display());
            if report.heads_need_repair {
                eprintln!(
                    "rollup-supervisor: the safe/finalized heads can be repaired without a resync: \
                     rollup-supervisor db repair-heads --datadir {} (the supervisor also repairs them when it starts)",
                    datadir.display()
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rollup-supervisor: cannot read the database: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `db check`: one `identity:` line for L1 and for each chain.
fn print_identities(db: &ChainsDb) {
    use rollup_supervisor_storage::IdentityOf;
    let mut out = std::io::stdout();
    for of in std::iter::once(IdentityOf::L1).chain(db.chains().into_iter().map(IdentityOf::L2)) {
        let _ = match db.identity(of) {
            Ok(Some(identity)) => writeln!(out, "identity: {of}: {identity}"),
            Ok(None) => {
                writeln!(out, "identity: {of}: none stored (written from the first recorded block on the next start)")
            }
            // `check` reports it as a problem.
            Err(e) => writeln!(out, "identity: {of}: unreadable: {e}"),
        };
    }
}

fn db_repair_heads(datadir: &std::path::Path) -> ExitCode {
    let mut db = match open_db(datadir) {
        Ok(db) => db,
        Err(code) => return code,
    };
    match db.repair_heads() {
        Ok(repairs) if repairs.is_empty() => {
            let _ = writeln!(
                std::io::stdout(),
                "ok: the safe and finalized heads agree with the L1 index; nothing to repair"
            );
            ExitCode::SUCCESS
        }
        Ok(repairs) => {
            for repair in &repairs {
                let _ = writeln!(std::io::stdout(), "repaired: {repair}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollup-supervisor: cannot repair the heads in {}: {e}", datadir.display());
            ExitCode::FAILURE
        }
    }
}

fn db_inspect(datadir: &std::path::Path) -> ExitCode {
    let db = match open_db(datadir) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let dump = || -> Result<serde_json::Value, rollup_supervisor_storage::StorageError> {
        let mut chains = serde_json::Map::new();
        for chain in db.chains() {
            let (mode, head) = db.chain_info(chain)?;
            chains.insert(chain.to_string(), serde_json::json!({ "mode": mode, "head": head, "log": db.log(chain)? }));
        }
        Ok(serde_json::json!({
            "heads": db.heads()?,
            "l1": db.l1_range(0, u64::MAX)?,
            "chains": chains,
        }))
    };
    match dump() {
        Ok(v) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollup-supervisor: cannot read the database: {e}");
            ExitCode::FAILURE
        }
    }
}
