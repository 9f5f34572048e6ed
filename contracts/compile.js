#!/usr/bin/env node
// Compiles contract <Name> from contracts/<Name>.sol with the pinned solc-js
// (tools/node_modules/solc) through solc's standard-JSON interface and writes a reproducible
// artifact: { contractName, compiler, abi, bytecode, deployedBytecode }.
//
// Usage: node contracts/compile.js <Name> <output.json>
//   e.g. node contracts/compile.js SequencerUptimeFeed contracts/out/SequencerUptimeFeed.json
// Normally run through contracts/build.sh.
'use strict';

const fs = require('fs');
const path = require('path');

const EXPECTED_COMPILER = '0.8.37';

const contractsDir = __dirname;
const repoRoot = path.resolve(contractsDir, '..');
const solcPath = path.join(repoRoot, 'tools', 'node_modules', 'solc');

function die(msg) {
  process.stderr.write(`compile.js: ${msg}\n`);
  process.exit(1);
}

const [CONTRACT, outPath] = process.argv.slice(2);
if (!CONTRACT || !outPath || process.argv.length !== 4) {
  die('usage: node contracts/compile.js <Name> <output.json>  (compiles contracts/<Name>.sol)');
}
if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(CONTRACT)) die(`not a contract name: ${CONTRACT}`);
// The source unit name is part of the compiler input, so it is fixed (repo-relative, forward
// slashes) rather than derived from the working directory.
const SOURCE_NAME = `contracts/${CONTRACT}.sol`;
if (!fs.existsSync(path.join(repoRoot, SOURCE_NAME))) die(`${SOURCE_NAME} does not exist`);

let solc;
try {
  solc = require(solcPath);
} catch (e) {
  die(`cannot load solc from ${solcPath} (run: npm ci --prefix tools): ${e.message}`);
}

const fullVersion = solc.version();
const version = fullVersion.split('+')[0];
if (version !== EXPECTED_COMPILER) {
  die(`expected solc ${EXPECTED_COMPILER}, found ${fullVersion}`);
}

const input = {
  language: 'Solidity',
  sources: {
    [SOURCE_NAME]: { content: fs.readFileSync(path.join(repoRoot, SOURCE_NAME), 'utf8') },
  },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    // No metadata hash / CBOR trailer: the bytecode depends only on the source and settings.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: {
      [SOURCE_NAME]: { [CONTRACT]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));

let failed = false;
for (const err of output.errors || []) {
  process.stderr.write(err.formattedMessage || `${err.severity}: ${err.message}\n`);
  if (err.severity === 'error') failed = true;
}
if (failed) die('compilation failed');

const compiled = output.contracts && output.contracts[SOURCE_NAME] && output.contracts[SOURCE_NAME][CONTRACT];
if (!compiled) die(`no output for ${SOURCE_NAME}:${CONTRACT}`);

const artifact = {
  contractName: CONTRACT,
  compiler: version,
  abi: compiled.abi,
  bytecode: '0x' + compiled.evm.bytecode.object,
  deployedBytecode: '0x' + compiled.evm.deployedBytecode.object,
};

fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
fs.writeFileSync(outPath, JSON.stringify(artifact, null, 2) + '\n');
