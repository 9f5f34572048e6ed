#!/usr/bin/env node
// Smoke test of contracts/out/SequencerUptimeFeed.json against a real anvil
// (tools/node_modules/@foundry-rs/anvil-linux-amd64). Run by hand:
//
//   node contracts/smoke.js
//
// Starts anvil on a free port, deploys the artifact with
// constructor(false, admin = account 0, feedUpdater = account 1), exercises the feed,
// prints one line per check and kills anvil. Exit code 0 = all checks passed.
// Uses only Node 20 builtins (global fetch) and js-sha3 from tools/node_modules.
'use strict';

const path = require('path');
const { spawn } = require('child_process');
const assert = require('assert/strict');

const root = path.resolve(__dirname, '..');
const { keccak256 } = require(path.join(root, 'tools', 'node_modules', 'js-sha3'));
const artifact = require(path.join(__dirname, 'out', 'SequencerUptimeFeed.json'));
const ANVIL = path.join(root, 'tools', 'node_modules', '@foundry-rs', 'anvil-linux-amd64', 'bin', 'anvil');

const ANSWER_UPDATED_TOPIC = '0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f';
const FEED_UPDATER_ROLE = '0x2a5eaae4dcc5567b2220ea5152021b46b5fb6cffc0f3a2f4eeb192fcd2fde452';
const DEFAULT_ADMIN_ROLE = '0x' + '00'.repeat(32);

// ---------------------------------------------------------------- ABI helpers

const hash = (s) => '0x' + keccak256(s);
const selector = (sig) => hash(sig).slice(0, 10);
const topic = (sig) => hash(sig);
const word = (v) => BigInt(v).toString(16).padStart(64, '0');
const enc = {
  bool: (b) => word(b ? 1 : 0),
  uint: (n) => word(n),
  address: (a) => a.toLowerCase().replace(/^0x/, '').padStart(64, '0'),
  bytes32: (h) => h.replace(/^0x/, ''),
};
const words = (hex) => (hex.replace(/^0x/, '').match(/.{64}/g) || []).map((w) => BigInt('0x' + w));
const topicAddr = (t) => '0x' + t.slice(-40);
const sigOf = (item) => `${item.name}(${item.inputs.map((i) => i.type).join(',')})`;

function calldata(sig, ...encodedArgs) {
  return selector(sig) + encodedArgs.join('');
}

// ---------------------------------------------------------------- anvil + JSON-RPC

let anvil;
let rpcUrl;
let rpcId = 0;

function startAnvil() {
  return new Promise((resolve, reject) => {
    anvil = spawn(ANVIL, ['--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('anvil did not report "Listening on" within 30 s')), 30000);
    anvil.on('error', (e) => { clearTimeout(timer); reject(e); });
    anvil.on('exit', (code) => { clearTimeout(timer); reject(new Error(`anvil exited early (code ${code}): ${buf}`)); });
    anvil.stdout.on('data', (d) => {
      buf += d.toString();
      const m = buf.match(/Listening on ([^\s]+)/);
      if (m) {
        clearTimeout(timer);
        anvil.removeAllListeners('exit');
        anvil.stdout.removeAllListeners('data');
        anvil.stdout.resume();
        resolve(`http://${m[1]}`);
      }
    });
    anvil.stderr.on('data', () => {});
  });
}

function stopAnvil() {
  if (anvil && anvil.exitCode === null && anvil.signalCode === null) anvil.kill('SIGTERM');
}

async function rpc(method, params = []) {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const body = await res.json();
  if (body.error) {
    const err = new Error(`${method}: ${body.error.message}`);
    err.rpc = body.error;
    throw err;
  }
  return body.result;
}

// Sends a transaction in its own block with the given block timestamp; returns the receipt.
async function send(from, to, data, ts, gas = 500000) {
  await rpc('evm_setNextBlockTimestamp', [Number(ts)]);
  const tx = { from, data, gas: '0x' + gas.toString(16) };
  if (to) tx.to = to;
  const hashTx = await rpc('eth_sendTransaction', [tx]);
  const receipt = await rpc('eth_getTransactionReceipt', [hashTx]);
  assert.ok(receipt, 'no receipt (automine off?)');
  return receipt;
}

async function call(to, data, from) {
  return rpc('eth_call', [{ to, data, ...(from ? { from } : {}) }, 'latest']);
}

// Returns the revert data of an eth_call that must revert.
async function callRevert(to, data, from) {
  try {
    const r = await call(to, data, from);
    throw new Error(`expected revert, got ${r}`);
  } catch (e) {
    if (!e.rpc) throw e;
    return typeof e.rpc.data === 'string' ? e.rpc.data : (e.rpc.data && e.rpc.data.data) || '';
  }
}

async function blockTs(blockNumber) {
  const b = await rpc('eth_getBlockByNumber', [blockNumber, false]);
  return BigInt(b.timestamp);
}

// ---------------------------------------------------------------- checks

let passed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok ${passed} - ${name}`);
  } catch (e) {
    console.log(`not ok ${passed + 1} - ${name}`);
    throw e;
  }
}

const SIG = {
  updateStatus: 'updateStatus(bool,uint64)',
  latestRoundData: 'latestRoundData()',
  getRoundData: 'getRoundData(uint80)',
  hasRole: 'hasRole(bytes32,address)',
  grantRole: 'grantRole(bytes32,address)',
  revokeRole: 'revokeRole(bytes32,address)',
  AnswerUpdated: 'AnswerUpdated(int256,uint256,uint256)',
  NewRound: 'NewRound(uint256,address,uint256)',
  RoundUpdated: 'RoundUpdated(int256,uint64)',
  UpdateIgnored: 'UpdateIgnored(bool,uint64,bool,uint64)',
  RoleGranted: 'RoleGranted(bytes32,address,address)',
  RoleRevoked: 'RoleRevoked(bytes32,address,address)',
};

async function latestRoundData(feed) {
  const [roundId, answer, startedAt, updatedAt, answeredInRound] = words(await call(feed, selector(SIG.latestRoundData)));
  return { roundId, answer, startedAt, updatedAt, answeredInRound };
}

function expectNewRoundAndAnswer(receipt, feed, { roundId, answer, startedBy, startedAt }) {
  assert.equal(receipt.status, '0x1');
  assert.equal(receipt.logs.length, 2, 'expected exactly NewRound + AnswerUpdated');
  const [nr, au] = receipt.logs;
  for (const l of receipt.logs) assert.equal(l.address.toLowerCase(), feed.toLowerCase());
  assert.equal(nr.topics[0], topic(SIG.NewRound));
  assert.equal(BigInt(nr.topics[1]), roundId);
  assert.equal(topicAddr(nr.topics[2]), startedBy.toLowerCase());
  assert.deepEqual(words(nr.data), [startedAt]);
  assert.equal(au.topics[0], ANSWER_UPDATED_TOPIC);
  assert.equal(BigInt(au.topics[1]), answer);
  assert.equal(BigInt(au.topics[2]), roundId);
  assert.deepEqual(words(au.data), [startedAt]);
}

async function main() {
  rpcUrl = await startAnvil();
  console.log(`# anvil listening at ${rpcUrl}`);

  const [admin, updater, stranger, helper] = await rpc('eth_accounts');
  const abiFns = artifact.abi.filter((i) => i.type === 'function').map(sigOf);
  const abiEvents = artifact.abi.filter((i) => i.type === 'event').map(sigOf);

  await check('selectors: updateStatus = 0xed8378f5, latestRoundData = 0xfeaf968c (and present in ABI)', () => {
    assert.equal(selector(SIG.updateStatus), '0xed8378f5');
    assert.equal(selector(SIG.latestRoundData), '0xfeaf968c');
    assert.ok(abiFns.includes(SIG.updateStatus));
    assert.ok(abiFns.includes(SIG.latestRoundData));
    assert.ok(abiFns.includes(SIG.getRoundData));
  });

  await check('AnswerUpdated topic0 = 0x0559884f…fc5f; all events present in ABI', () => {
    assert.equal(topic(SIG.AnswerUpdated), ANSWER_UPDATED_TOPIC);
    for (const ev of ['AnswerUpdated', 'NewRound', 'RoundUpdated', 'UpdateIgnored', 'RoleGranted', 'RoleRevoked']) {
      assert.ok(abiEvents.includes(SIG[ev]), `${SIG[ev]} missing from ABI`);
    }
  });

  // Deploy: constructor(false, admin, updater).
  const head = await blockTs('latest');
  const t0 = head + 10n;
  const ctorArgs = enc.bool(false) + enc.address(admin) + enc.address(updater);
  const deployReceipt = await send(admin, null, artifact.bytecode + ctorArgs, t0, 3000000);
  const feed = deployReceipt.contractAddress;

  await check(`deploy (false, admin, updater) at ${feed}: RoleGranted x2, NewRound(1) + AnswerUpdated(0, 1, t0)`, async () => {
    assert.equal(deployReceipt.status, '0x1');
    const code = await rpc('eth_getCode', [feed, 'latest']);
    assert.equal(code, artifact.deployedBytecode);
    const logs = deployReceipt.logs;
    assert.equal(logs.length, 4);
    assert.deepEqual(logs[0].topics, [topic(SIG.RoleGranted), DEFAULT_ADMIN_ROLE, '0x' + enc.address(admin), '0x' + enc.address(admin)]);
    assert.deepEqual(logs[1].topics, [topic(SIG.RoleGranted), FEED_UPDATER_ROLE, '0x' + enc.address(updater), '0x' + enc.address(admin)]);
    expectNewRoundAndAnswer({ status: '0x1', logs: logs.slice(2) }, feed, { roundId: 1n, answer: 0n, startedBy: admin, startedAt: t0 });
  });

  await check('FEED_UPDATER_ROLE() = 0x2a5eaae4…e452 = keccak256("FEED_UPDATER_ROLE"); DEFAULT_ADMIN_ROLE() = 0x00', async () => {
    assert.equal(hash('FEED_UPDATER_ROLE'), FEED_UPDATER_ROLE);
    assert.equal(await call(feed, selector('FEED_UPDATER_ROLE()')), FEED_UPDATER_ROLE);
    assert.equal(await call(feed, selector('DEFAULT_ADMIN_ROLE()')), DEFAULT_ADMIN_ROLE);
  });

  await check('roles: admin has DEFAULT_ADMIN_ROLE, updater has FEED_UPDATER_ROLE, admin does not', async () => {
    const has = async (role, who) => words(await call(feed, calldata(SIG.hasRole, enc.bytes32(role), enc.address(who))))[0];
    assert.equal(await has(DEFAULT_ADMIN_ROLE, admin), 1n);
    assert.equal(await has(FEED_UPDATER_ROLE, updater), 1n);
    assert.equal(await has(FEED_UPDATER_ROLE, admin), 0n);
  });

  await check('views: decimals 0, version 1, description, latestRoundData = (1, 0, t0, t0, 1)', async () => {
    assert.equal(words(await call(feed, selector('decimals()')))[0], 0n);
    assert.equal(words(await call(feed, selector('version()')))[0], 1n);
    const d = (await call(feed, selector('description()'))).slice(2);
    const len = Number(BigInt('0x' + d.slice(64, 128)));
    assert.equal(Buffer.from(d.slice(128, 128 + 2 * len), 'hex').toString(), 'L2 Sequencer Uptime Status Feed');
    assert.deepEqual(await latestRoundData(feed), { roundId: 1n, answer: 0n, startedAt: t0, updatedAt: t0, answeredInRound: 1n });
  });

  const invalidSender = selector('InvalidSender()');
  await check('non-updater updateStatus reverts InvalidSender() (eth_call data and mined tx status 0)', async () => {
    for (const who of [stranger, admin]) {
      assert.equal(await callRevert(feed, calldata(SIG.updateStatus, enc.bool(true), enc.uint(t0 + 1n)), who), invalidSender);
    }
    const r = await send(stranger, feed, calldata(SIG.updateStatus, enc.bool(true), enc.uint(t0 + 1n)), t0 + 5n, 100000);
    assert.equal(r.status, '0x0');
    assert.equal(r.logs.length, 0);
    assert.equal((await latestRoundData(feed)).roundId, 1n);
  });

  // Down: updateStatus(true, T) with T = timestamp of the last block, mined in a later block.
  const T = await blockTs('latest');
  const downBlockTs = T + 12n;
  const down = await send(updater, feed, calldata(SIG.updateStatus, enc.bool(true), enc.uint(T)), downBlockTs);
  await check(`updater updateStatus(true, T=${T}): NewRound(2, updater, T) + AnswerUpdated(1, 2, T)`, async () => {
    expectNewRoundAndAnswer(down, feed, { roundId: 2n, answer: 1n, startedBy: updater, startedAt: T });
    assert.equal(down.logs[1].topics[0], '0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f');
  });

  await check('latestRoundData = (2, 1, T, block.timestamp of the update, 2)', async () => {
    assert.deepEqual(await latestRoundData(feed), { roundId: 2n, answer: 1n, startedAt: T, updatedAt: downBlockTs, answeredInRound: 2n });
  });

  await check('older timestamp (false, T-1): UpdateIgnored(true, T, false, T-1), state unchanged', async () => {
    const r = await send(updater, feed, calldata(SIG.updateStatus, enc.bool(false), enc.uint(T - 1n)), downBlockTs + 1n);
    assert.equal(r.status, '0x1');
    assert.equal(r.logs.length, 1);
    assert.deepEqual(r.logs[0].topics, [topic(SIG.UpdateIgnored)]);
    assert.deepEqual(words(r.logs[0].data), [1n, T, 0n, T - 1n]);
    assert.deepEqual(await latestRoundData(feed), { roundId: 2n, answer: 1n, startedAt: T, updatedAt: downBlockTs, answeredInRound: 2n });
  });

  const refreshTs = downBlockTs + 2n;
  await check('same status (true, T+5): RoundUpdated(1, block.timestamp), only updatedAt moves, no new round', async () => {
    const r = await send(updater, feed, calldata(SIG.updateStatus, enc.bool(true), enc.uint(T + 5n)), refreshTs);
    assert.equal(r.status, '0x1');
    assert.equal(r.logs.length, 1);
    assert.deepEqual(r.logs[0].topics, [topic(SIG.RoundUpdated)]);
    assert.deepEqual(words(r.logs[0].data), [1n, refreshTs]);
    assert.deepEqual(await latestRoundData(feed), { roundId: 2n, answer: 1n, startedAt: T, updatedAt: refreshTs, answeredInRound: 2n });
  });

  await check('getRoundData(1), getRoundData(2) return the stored rounds; rounds 0 and 3 revert NoDataPresent()', async () => {
    assert.deepEqual(words(await call(feed, calldata(SIG.getRoundData, enc.uint(1)))), [1n, 0n, t0, t0, 1n]);
    assert.deepEqual(words(await call(feed, calldata(SIG.getRoundData, enc.uint(2)))), [2n, 1n, T, refreshTs, 2n]);
    for (const id of [0, 3]) {
      assert.equal(await callRevert(feed, calldata(SIG.getRoundData, enc.uint(id))), selector('NoDataPresent()'));
    }
  });

  const upTs = refreshTs + 3n;
  await check('status change back (false, upTs): NewRound(3) + AnswerUpdated(0, 3, upTs)', async () => {
    const r = await send(updater, feed, calldata(SIG.updateStatus, enc.bool(false), enc.uint(upTs)), upTs);
    expectNewRoundAndAnswer(r, feed, { roundId: 3n, answer: 0n, startedBy: updater, startedAt: upTs });
    assert.deepEqual(await latestRoundData(feed), { roundId: 3n, answer: 0n, startedAt: upTs, updatedAt: upTs, answeredInRound: 3n });
  });

  // The pair the supervisor injects after a gap, both in the first block after it:
  // tx0 = down at the last block's timestamp, tx1 = up at the new block's timestamp.
  await check('down+up pair in one block: tx0 AnswerUpdated(1, 4, last), tx1 AnswerUpdated(0, 5, t), t > last', async () => {
    const last = await blockTs('latest');
    const t = last + 30n;
    await rpc('evm_setAutomine', [false]);
    let h0, h1;
    try {
      h0 = await rpc('eth_sendTransaction', [{ from: updater, to: feed, gas: '0x186a0', data: calldata(SIG.updateStatus, enc.bool(true), enc.uint(last)) }]);
      h1 = await rpc('eth_sendTransaction', [{ from: updater, to: feed, gas: '0x186a0', data: calldata(SIG.updateStatus, enc.bool(false), enc.uint(t)) }]);
      await rpc('evm_mine', [Number(t)]);
    } finally {
      await rpc('evm_setAutomine', [true]);
    }
    const r0 = await rpc('eth_getTransactionReceipt', [h0]);
    const r1 = await rpc('eth_getTransactionReceipt', [h1]);
    assert.equal(r0.blockNumber, r1.blockNumber);
    assert.equal(await blockTs(r0.blockNumber), t);
    assert.equal(BigInt(r0.transactionIndex), 0n);
    assert.equal(BigInt(r1.transactionIndex), 1n);
    expectNewRoundAndAnswer(r0, feed, { roundId: 4n, answer: 1n, startedBy: updater, startedAt: last });
    expectNewRoundAndAnswer(r1, feed, { roundId: 5n, answer: 0n, startedBy: updater, startedAt: t });
    assert.deepEqual(await latestRoundData(feed), { roundId: 5n, answer: 0n, startedAt: t, updatedAt: t, answeredInRound: 5n });
    assert.deepEqual(words(await call(feed, calldata(SIG.getRoundData, enc.uint(4)))), [4n, 1n, last, t, 4n]);
  });

  await check('grantRole/revokeRole: admin only (AccessControlUnauthorizedAccount), RoleGranted/RoleRevoked, role gates updateStatus', async () => {
    const grant = calldata(SIG.grantRole, enc.bytes32(FEED_UPDATER_ROLE), enc.address(helper));
    const revoke = calldata(SIG.revokeRole, enc.bytes32(FEED_UPDATER_ROLE), enc.address(helper));
    const unauthorized = selector('AccessControlUnauthorizedAccount(address,bytes32)') + enc.address(updater) + enc.bytes32(DEFAULT_ADMIN_ROLE);
    assert.equal(await callRevert(feed, grant, updater), unauthorized);
    let ts = (await blockTs('latest')) + 1n;
    const g = await send(admin, feed, grant, ts++);
    assert.equal(g.status, '0x1');
    assert.deepEqual(g.logs.map((l) => l.topics), [[topic(SIG.RoleGranted), FEED_UPDATER_ROLE, '0x' + enc.address(helper), '0x' + enc.address(admin)]]);
    const u = await send(helper, feed, calldata(SIG.updateStatus, enc.bool(false), enc.uint(ts)), ts++);
    assert.deepEqual(u.logs.map((l) => l.topics[0]), [topic(SIG.RoundUpdated)]);
    const rv = await send(admin, feed, revoke, ts++);
    assert.deepEqual(rv.logs.map((l) => l.topics), [[topic(SIG.RoleRevoked), FEED_UPDATER_ROLE, '0x' + enc.address(helper), '0x' + enc.address(admin)]]);
    assert.equal(await callRevert(feed, calldata(SIG.updateStatus, enc.bool(true), enc.uint(ts)), helper), invalidSender);
  });
}

main()
  .then(() => {
    console.log(`# all ${passed} checks passed`);
    stopAnvil();
  })
  .catch((e) => {
    console.error(e && e.stack ? e.stack : e);
    console.log(`# FAILED after ${passed} passing checks`);
    stopAnvil();
    process.exitCode = 1;
  });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { stopAnvil(); process.exit(130); });
}
