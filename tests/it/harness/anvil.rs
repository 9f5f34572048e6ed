//! The tests' anvil: the one launcher (`bin/devnet/anvil.rs`, [`AnvilNode`]) with the tests'
//! JSON-RPC client in front, so that `anvil.block_number()`, `anvil.reorg(5, 5)` etc. work
//! directly.

use std::{net::SocketAddr, ops::Deref, path::PathBuf};

use anyhow::Result;

use super::{
    launcher::{AnvilNode, AnvilOptions},
    rpc::RpcClient,
};

/// A running anvil on `127.0.0.1:<port>` ([`AnvilNode`]). Derefs to [`RpcClient`] for all RPC
/// helpers. Dropping it kills (SIGKILL; SIGTERM first if `dump_state` is set) and reaps the
/// process.
#[derive(Debug)]
pub struct Anvil {
    node: AnvilNode,
    client: RpcClient,
}

impl Deref for Anvil {
    type Target = RpcClient;
    fn deref(&self) -> &RpcClient {
        &self.client
    }
}

impl Anvil {
    /// Starts anvil on an ephemeral port; returns once it answers.
    pub async fn spawn(opts: AnvilOptions) -> Result<Anvil> {
        Self::wrap(AnvilNode::spawn(opts).await?)
    }

    pub async fn spawn_with_bin(bin: PathBuf, opts: AnvilOptions) -> Result<Anvil> {
        Self::wrap(AnvilNode::spawn_with_bin(bin, opts).await?)
    }

    fn wrap(node: AnvilNode) -> Result<Anvil> {
        let client = RpcClient::new(node.url())?;
        Ok(Anvil { node, client })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.node.url().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.node.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.node.addr()
    }

    /// OS pid while the process is running (not after [`Self::kill`]).
    pub fn pid(&self) -> Option<u32> {
        self.node.pid()
    }

    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    /// The launcher: options, output lines, whether it still runs.
    pub fn node(&mut self) -> &mut AnvilNode {
        &mut self.node
    }

    /// [`AnvilNode::kill`]: SIGKILL + reap; [`RpcClient::dump_state`] first and
    /// [`RpcClient::load_state`] after [`Self::restart`] to keep the chain.
    pub async fn kill(&mut self) {
        self.node.kill().await;
    }

    /// [`AnvilNode::shutdown`]: SIGTERM, so that `--dump-state` is written.
    pub async fn shutdown(&mut self) -> Result<()> {
        self.node.shutdown().await
    }

    /// [`AnvilNode::restart`]: a fresh anvil on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.node.restart().await
    }

    /// [`AnvilNode::restart_with`]: the same with other options.
    pub async fn restart_with(&mut self, opts: AnvilOptions) -> Result<()> {
        self.node.restart_with(opts).await
    }
}
