#!/usr/bin/env node
// The `d1ctl` command of the npm package: finds the d1ctl binary that this platform's package
// (`@d1ctl/<platform>`, an optional dependency npm picks by os, cpu and libc) installed, runs
// it with the same arguments and standard streams, and ends the way it ended: the same exit
// code, or the same signal. There is no install script: nothing is fetched or built at install.
'use strict';

const { spawn } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const { version } = require('../package.json');

// Signals a caller may send the launcher (a CI runner cancelling a job, `kill`, a closed
// terminal): passed on, so d1ctl reacts to them as if it had been started directly.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGBREAK'];

/** `gnu` or `musl` on Linux: node built against glibc reports the glibc it runs on. */
function linuxLibc() {
  const report = process.report && process.report.getReport();
  return report && report.header && report.header.glibcVersionRuntime ? 'gnu' : 'musl';
}

/** The platform packages that can run here, best first, and words for an error message. */
function candidates() {
  const { platform, arch } = process;
  if (platform === 'linux' && (arch === 'x64' || arch === 'arm64')) {
    const libc = linuxLibc();
    const names = [`linux-${arch}-${libc}`];
    // The musl build is static: it runs on a glibc system too, when only it was installed.
    if (libc === 'gnu' && arch === 'x64') names.push('linux-x64-musl');
    return { names, where: `linux ${arch} (${libc === 'gnu' ? 'glibc' : 'musl'})` };
  }
  if (platform === 'darwin' && (arch === 'x64' || arch === 'arm64')) {
    return { names: [`darwin-${arch}`], where: `macOS ${arch}` };
  }
  if (platform === 'win32' && arch === 'x64') {
    return { names: ['win32-x64'], where: 'Windows x64' };
  }
  return { names: [], where: `${platform} ${arch}` };
}

function fail(message, hint) {
  process.stderr.write(`error: ${message}\n\nhint: ${hint}\n`);
  // 2: d1ctl's own code for an error that is not a finding.
  process.exit(2);
}

function findBinary() {
  const { names, where } = candidates();
  if (names.length === 0) {
    fail(
      `d1ctl has no prebuilt binary for ${where}`,
      'build it from source with a Rust toolchain: `cargo install --locked --path .` in a clone of d1ctl',
    );
  }
  const file = process.platform === 'win32' ? 'd1ctl.exe' : 'd1ctl';
  for (const name of names) {
    try {
      const manifest = require.resolve(`@d1ctl/${name}/package.json`);
      return path.join(path.dirname(manifest), 'bin', file);
    } catch {
      // Not installed: try the next one.
    }
  }
  const wanted = `@d1ctl/${names[0]}`;
  return fail(
    `the package \`${wanted}\`, which holds d1ctl's binary for ${where}, is not installed`,
    `npm installs it as an optional dependency of \`d1ctl\`; it is left out when optional ` +
      `dependencies are omitted (\`--omit=optional\`, \`--no-optional\`) or when the lockfile ` +
      `was written on another platform without it. Reinstall with optional dependencies, or ` +
      `add it yourself: \`npm install --save-dev ${wanted}@${version}\``,
  );
}

const binary = findBinary();
const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' });

const forwarders = FORWARDED.map((signal) => {
  const forward = () => {
    // Gone already: its exit is on its way.
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  try {
    process.on(signal, forward);
  } catch {
    // A signal this OS does not have (SIGBREAK off Windows on some node versions).
  }
  return [signal, forward];
});

child.on('error', (error) => {
  fail(
    `could not run \`${binary}\`: ${error.message}`,
    'reinstall the `d1ctl` package; the binary of its platform package may be missing or not executable',
  );
});

child.on('exit', (code, signal) => {
  if (signal === null) {
    process.exit(code === null ? 1 : code);
  }
  // Die of the same signal, so a shell or CI runner sees 128+N as if d1ctl ran directly.
  for (const [name, forward] of forwarders) process.removeListener(name, forward);
  process.kill(process.pid, signal);
  // A signal node keeps ignoring (SIGPIPE): say it the way a shell would.
  setTimeout(() => process.exit(128 + (os.constants.signals[signal] || 0)), 100);
});
