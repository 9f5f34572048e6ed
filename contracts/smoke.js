#!/usr/bin/env node
// Smoke test of contracts/out/SequencerUptimeFeed.json and contracts/out/UptimeReporter.json
// against a real anvil (tools/node_modules/@foundry-rs/anvil-linux-amd64). Run by hand:
//
//   node contracts/smoke.js
//
// Starts anvil on a free port, deploys the feed with
// constructor(false, admin = account 0, feedUpdater = account 1) and exercises it, then deploys
// a fresh feed plus an UptimeReporter wired to it and exercises the reporter, measures gas
// (printed as "# gas ..." lines), prints one line per check and kills anvil.
// Exit code 0 = all checks passed.
// Uses only Node 20 builtins (global fetch) and js-sha3 from tools/node_modules.
'use strict';

const path = require('path');
const { spawn } = require('child_process');
const assert = require('assert/strict');

const root = path.resolve(__dirname, '..');
const { keccak256 } = require(path.join(root, 'tools', 'node_modules', 'js-sha3'));
const artifact = require(path.join(__dirname, 'out', 'SequencerUptimeFeed.json'));
const reporterArtifact = require(path.join(__dirname, 'out', 'UptimeReporter.json'));
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

// Returns the receipt of a transaction. With automine on, anvil answers eth_sendTransaction
// with the hash and may index the receipt a moment later, so poll briefly instead of
// requiring it on the first ask.
async function receiptOf(hashTx) {
  for (let i = 0; i < 200; i++) {
    const receipt = await rpc('eth_getTransactionReceipt', [hashTx]);
    if (receipt) return receipt;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no receipt for ${hashTx} after 5 s (automine off?)`);
}

// Sends a transaction in its own block with the given block timestamp; returns the receipt.
async function send(from, to, data, ts, gas = 500000) {
  await rpc('evm_setNextBlockTimestamp', [Number(ts)]);
  const tx = { from, data, gas: '0x' + gas.toString(16) };
  if (to) tx.to = to;
  const hashTx = await rpc('eth_sendTransaction', [tx]);
  return receiptOf(hashTx);
}

// Revert data of a mined transaction that failed (replayed with debug_traceTransaction).
async function minedRevertData(receipt) {
  const trace = await rpc('debug_traceTransaction', [receipt.transactionHash, {}]);
  assert.equal(trace.failed, true, 'transaction did not fail');
  const rv = trace.returnValue || '';
  return rv.startsWith('0x') ? rv : '0x' + rv;
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
    const r0 = await receiptOf(h0);
    const r1 = await receiptOf(h1);
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

  await reporterChecks({ admin, updater, stranger });
  await gasChecks({ admin, updater });
}

// ---------------------------------------------------------------- UptimeReporter

const RSIG = {
  report: 'report(uint64)',
  setReporter: 'setReporter(address,bool)',
  isReporter: 'isReporter(address)',
  feed: 'feed()',
  admin: 'admin()',
  NotReporter: 'NotReporter()',
  BadTimestamp: 'BadTimestamp()',
  NotAdmin: 'NotAdmin()',
  ZeroAddressNotAllowed: 'ZeroAddressNotAllowed()',
  OutageReported: 'OutageReported(uint64,uint64)',
  ReporterSet: 'ReporterSet(address,bool)',
};
const REPORTER_SELECTORS = {
  report: '0xc9fc1e77',
  setReporter: '0xe1bb5133',
  isReporter: '0x044ad7be',
  feed: '0x37a7b7d8',
  admin: '0xf851a440',
  NotReporter: '0xe5ce9c09',
  BadTimestamp: '0x2ea26f13',
  NotAdmin: '0x7bfa4b9f',
};
const OUTAGE_REPORTED_TOPIC = '0x92c48c30922e579a16d2ec01f575c8b7def9564119b44ee7e8eeb3747f97ed39';
const REPORTER_SET_TOPIC = '0x49414e0a37c19781141fced7b2dc68c560d888c72174623b7bba993149d9064d';

const feedCtor = (initialStatus, admin, updater) =>
  artifact.bytecode + enc.bool(initialStatus) + enc.address(admin) + enc.address(updater);
const reporterCtor = (feed, admin) => reporterArtifact.bytecode + enc.address(feed) + enc.address(admin);

const gas = {};

async function reporterChecks({ admin, updater, stranger }) {
  const accounts = await rpc('eth_accounts');
  const signer = accounts[4]; // the supervisor's signer
  const fns = reporterArtifact.abi.filter((i) => i.type === 'function').map(sigOf);
  const events = reporterArtifact.abi.filter((i) => i.type === 'event').map(sigOf);
  const errors = reporterArtifact.abi.filter((i) => i.type === 'error').map(sigOf);

  await check('reporter ABI: selectors, error selectors and event topics as documented; constructor(address,address)', () => {
    for (const [k, v] of Object.entries(REPORTER_SELECTORS)) assert.equal(selector(RSIG[k]), v, RSIG[k]);
    assert.equal(topic(RSIG.OutageReported), OUTAGE_REPORTED_TOPIC);
    assert.equal(topic(RSIG.ReporterSet), REPORTER_SET_TOPIC);
    for (const f of ['report', 'setReporter', 'isReporter', 'feed', 'admin']) assert.ok(fns.includes(RSIG[f]), `${RSIG[f]} missing`);
    for (const e of ['OutageReported', 'ReporterSet']) assert.ok(events.includes(RSIG[e]), `${RSIG[e]} missing`);
    for (const e of ['NotReporter', 'BadTimestamp', 'NotAdmin']) assert.ok(errors.includes(RSIG[e]), `${RSIG[e]} missing`);
    const ctor = reporterArtifact.abi.find((i) => i.type === 'constructor');
    assert.deepEqual(ctor.inputs.map((i) => i.type), ['address', 'address']);
  });

  // A fresh feed whose latest round (1) is "up", and a reporter wired to it.
  let ts = (await blockTs('latest')) + 10n;
  const fd = await send(admin, null, feedCtor(false, admin, updater), ts++, 3000000);
  assert.equal(fd.status, '0x1');
  const feed = fd.contractAddress;
  const rd = await send(admin, null, reporterCtor(feed, admin), ts++, 3000000);
  const reporter = rd.contractAddress;
  const reportData = (t) => calldata(RSIG.report, enc.uint(t));
  const setReporterData = (who, allowed) => calldata(RSIG.setReporter, enc.address(who), enc.bool(allowed));
  const isReporter = async (who) => words(await call(reporter, calldata(RSIG.isReporter, enc.address(who))))[0];

  await check(`deploy UptimeReporter(feed ${feed}, admin) at ${reporter}: feed(), admin(), isReporter(signer) = false`, async () => {
    assert.equal(rd.status, '0x1');
    assert.equal(rd.logs.length, 0);
    const code = await rpc('eth_getCode', [reporter, 'latest']);
    assert.equal(code.length, reporterArtifact.deployedBytecode.length);
    assert.equal(topicAddr(await call(reporter, selector(RSIG.feed))), feed.toLowerCase());
    assert.equal(topicAddr(await call(reporter, selector(RSIG.admin))), admin.toLowerCase());
    assert.equal(await isReporter(signer), 0n);
  });

  await check('constructor with a zero feed or admin reverts ZeroAddressNotAllowed()', async () => {
    const zero = '0x' + '00'.repeat(20);
    for (const data of [reporterCtor(zero, admin), reporterCtor(feed, zero)]) {
      const r = await rpc('eth_call', [{ from: admin, data, gas: '0x2dc6c0' }, 'latest']).then(
        (x) => { throw new Error(`expected revert, got ${x}`); },
        (e) => { if (!e.rpc) throw e; return typeof e.rpc.data === 'string' ? e.rpc.data : (e.rpc.data && e.rpc.data.data) || ''; },
      );
      assert.equal(r, selector(RSIG.ZeroAddressNotAllowed));
    }
  });

  await check('setReporter by a non-admin reverts NotAdmin() (eth_call data and mined tx status 0, revert data NotAdmin())', async () => {
    for (const who of [stranger, signer, updater]) {
      assert.equal(await callRevert(reporter, setReporterData(signer, true), who), REPORTER_SELECTORS.NotAdmin);
    }
    const r = await send(stranger, reporter, setReporterData(stranger, true), ts++, 100000);
    assert.equal(r.status, '0x0');
    assert.equal(r.logs.length, 0);
    assert.equal(await minedRevertData(r), REPORTER_SELECTORS.NotAdmin);
    assert.equal(await isReporter(stranger), 0n);
  });

  await check('admin setReporter(signer, true): ReporterSet(signer, true), isReporter(signer) = true', async () => {
    const r = await send(admin, reporter, setReporterData(signer, true), ts++);
    assert.equal(r.status, '0x1');
    assert.equal(r.logs.length, 1);
    assert.equal(r.logs[0].address.toLowerCase(), reporter.toLowerCase());
    assert.deepEqual(r.logs[0].topics, [REPORTER_SET_TOPIC]);
    assert.equal(r.logs[0].data, '0x' + enc.address(signer) + enc.bool(true));
    assert.equal(await isReporter(signer), 1n);
  });

  await check('report by a non-reporter reverts NotReporter() (the reporter admin too; mined tx status 0)', async () => {
    const last = await blockTs('latest');
    for (const who of [stranger, admin, updater]) {
      assert.equal(await callRevert(reporter, reportData(last), who), REPORTER_SELECTORS.NotReporter);
    }
    const r = await send(stranger, reporter, reportData(last), ts++, 200000);
    assert.equal(r.status, '0x0');
    assert.equal(r.logs.length, 0);
    assert.equal(await minedRevertData(r), REPORTER_SELECTORS.NotReporter);
  });

  await check('before the feed grants FEED_UPDATER_ROLE to the reporter, report bubbles up the feed\'s InvalidSender()', async () => {
    // eth_call runs on the latest block, whose own timestamp is block.timestamp, so use last - 1.
    const last = await blockTs('latest');
    assert.equal(await callRevert(reporter, reportData(last - 1n), signer), selector('InvalidSender()'));
    const r = await send(signer, reporter, reportData(last), ts++, 200000);
    assert.equal(r.status, '0x0');
    assert.equal(r.logs.length, 0);
    assert.equal(await minedRevertData(r), selector('InvalidSender()'));
  });

  await check('feed admin grants FEED_UPDATER_ROLE to the reporter: RoleGranted, hasRole', async () => {
    const r = await send(admin, feed, calldata(SIG.grantRole, enc.bytes32(FEED_UPDATER_ROLE), enc.address(reporter)), ts++);
    assert.equal(r.status, '0x1');
    assert.deepEqual(r.logs.map((l) => l.topics), [[topic(SIG.RoleGranted), FEED_UPDATER_ROLE, '0x' + enc.address(reporter), '0x' + enc.address(admin)]]);
    assert.equal(words(await call(feed, calldata(SIG.hasRole, enc.bytes32(FEED_UPDATER_ROLE), enc.address(reporter))))[0], 1n);
  });

  await check('report(t) with t >= block.timestamp reverts BadTimestamp() (t = block ts and t = block ts + 1 mined; far future by eth_call); feed unchanged', async () => {
    const before = await latestRoundData(feed);
    assert.equal(before.roundId, 1n);
    for (const delta of [0n, 1n]) {
      const blockT = ts++;
      const r = await send(signer, reporter, reportData(blockT + delta), blockT, 200000);
      assert.equal(r.status, '0x0');
      assert.equal(r.logs.length, 0);
      assert.equal(await blockTs(r.blockNumber), blockT);
      assert.equal(await minedRevertData(r), REPORTER_SELECTORS.BadTimestamp);
    }
    const far = (await blockTs('latest')) + 100000n;
    assert.equal(await callRevert(reporter, reportData(far), signer), REPORTER_SELECTORS.BadTimestamp);
    assert.deepEqual(await latestRoundData(feed), before);
  });

  // The outage report: down at the last block's timestamp, mined in a block 30 s later.
  const last = await blockTs('latest');
  const upTs = last + 30n;
  const rep = await send(signer, reporter, reportData(last), upTs);
  gas.report = BigInt(rep.gasUsed);

  await check(`report(last=${last}) in a block at ${upTs}: NewRound(2)+AnswerUpdated(1, 2, last), NewRound(3)+AnswerUpdated(0, 3, block.timestamp), OutageReported(last, block.timestamp)`, async () => {
    assert.equal(rep.status, '0x1');
    const blockT = await blockTs(rep.blockNumber);
    assert.equal(blockT, upTs);
    assert.equal(rep.logs.length, 5);
    expectNewRoundAndAnswer({ status: rep.status, logs: rep.logs.slice(0, 2) }, feed, { roundId: 2n, answer: 1n, startedBy: reporter, startedAt: last });
    expectNewRoundAndAnswer({ status: rep.status, logs: rep.logs.slice(2, 4) }, feed, { roundId: 3n, answer: 0n, startedBy: reporter, startedAt: blockT });
    assert.equal(rep.logs.filter((l) => l.topics[0] === ANSWER_UPDATED_TOPIC).length, 2);
    const o = rep.logs[4];
    assert.equal(o.address.toLowerCase(), reporter.toLowerCase());
    assert.deepEqual(o.topics, [OUTAGE_REPORTED_TOPIC]);
    assert.deepEqual(words(o.data), [last, blockT]);
  });

  await check('after report: latestRoundData = (3, 0, block.timestamp, block.timestamp, 3), getRoundData(2) = (2, 1, last, block.timestamp, 2)', async () => {
    assert.deepEqual(await latestRoundData(feed), { roundId: 3n, answer: 0n, startedAt: upTs, updatedAt: upTs, answeredInRound: 3n });
    assert.deepEqual(words(await call(feed, calldata(SIG.getRoundData, enc.uint(2)))), [2n, 1n, last, upTs, 2n]);
  });

  await check('admin setReporter(signer, false): ReporterSet(signer, false); report now reverts NotReporter()', async () => {
    const r = await send(admin, reporter, setReporterData(signer, false), upTs + 1n);
    assert.equal(r.status, '0x1');
    assert.deepEqual(r.logs.map((l) => [l.topics, l.data]), [[[REPORTER_SET_TOPIC], '0x' + enc.address(signer) + enc.bool(false)]]);
    assert.equal(await isReporter(signer), 0n);
    assert.equal(await callRevert(reporter, reportData(upTs), signer), REPORTER_SELECTORS.NotReporter);
  });
}

// ---------------------------------------------------------------- gas

async function gasChecks({ admin, updater }) {
  // A fresh feed (latest round 1 "up"); direct updateStatus calls by the updater EOA.
  let ts = (await blockTs('latest')) + 10n;
  const fd = await send(admin, null, feedCtor(false, admin, updater), ts++, 3000000);
  const feed = fd.contractAddress;
  const upd = async (status, t) => {
    const r = await send(updater, feed, calldata(SIG.updateStatus, enc.bool(status), enc.uint(t)), ts++);
    assert.equal(r.status, '0x1');
    return r;
  };
  const down = await upd(true, ts - 1n);
  const up = await upd(false, ts);
  const refreshUp = await upd(false, ts);
  const refreshDown0 = await upd(true, ts - 1n); // new round again, to measure the "down" refresh next
  const refreshDown = await upd(true, ts - 1n);
  gas.downNewRound = BigInt(down.gasUsed);
  gas.upNewRound = BigInt(up.gasUsed);
  gas.refreshUp = BigInt(refreshUp.gasUsed);
  gas.refreshDown = BigInt(refreshDown.gasUsed);

  await check('gas: direct updateStatus new rounds (down, up) and same-status refreshes, report() of both rounds', () => {
    assert.deepEqual(down.logs.map((l) => l.topics[0]), [topic(SIG.NewRound), ANSWER_UPDATED_TOPIC]);
    assert.deepEqual(up.logs.map((l) => l.topics[0]), [topic(SIG.NewRound), ANSWER_UPDATED_TOPIC]);
    assert.deepEqual(refreshUp.logs.map((l) => l.topics[0]), [topic(SIG.RoundUpdated)]);
    assert.deepEqual(refreshDown0.logs.map((l) => l.topics[0]), [topic(SIG.NewRound), ANSWER_UPDATED_TOPIC]);
    assert.deepEqual(refreshDown.logs.map((l) => l.topics[0]), [topic(SIG.RoundUpdated)]);
    console.log(`# gas report(uint64), both rounds new (down then up), feed latest "up": ${gas.report}`);
    console.log(`# gas updateStatus(true, ts)  new round (up -> down):  ${gas.downNewRound}`);
    console.log(`# gas updateStatus(false, ts) new round (down -> up):  ${gas.upNewRound}`);
    console.log(`# gas updateStatus(false, ts) same-status refresh (up):   ${gas.refreshUp}`);
    console.log(`# gas updateStatus(true, ts)  same-status refresh (down): ${gas.refreshDown}`);
    console.log(`# gas two direct updateStatus txs (down + up): ${gas.downNewRound + gas.upNewRound}; report saves ${gas.downNewRound + gas.upNewRound - gas.report}`);
    assert.ok(gas.report < gas.downNewRound + gas.upNewRound, 'one report should cost less than two direct transactions');
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
