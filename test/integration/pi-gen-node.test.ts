/**
 * Which Node.js the Raspberry Pi image gets: the pi-gen stage's own decision script
 * (pi-gen/stage-snapback/01-node/node-source.sh, with the real `dpkg --compare-versions`) picks
 * the distribution's nodejs when it is new enough and falls back to nodejs.org's tarball
 * otherwise; its minimum is package.json's engines.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NODE_STAGE = join(ROOT, 'pi-gen', 'stage-snapback', '01-node');

function stageMinimum(): string {
  const m = /^NODE_MIN_VERSION=(\S+)$/m.exec(readFileSync(join(NODE_STAGE, '00-run.sh'), 'utf8'));
  assert.ok(m?.[1], '01-node/00-run.sh sets NODE_MIN_VERSION');
  return m[1];
}

function source(candidate: string, env: Record<string, string> = {}): string {
  const r = spawnSync(join(NODE_STAGE, 'node-source.sh'), [candidate, stageMinimum()], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

describe('pi-gen stage: the Node.js the image gets', () => {
  it("asks for the same minimum as package.json's engines", () => {
    const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    assert.equal(engines, `>=${stageMinimum()}`);
  });

  it("takes the distribution's nodejs when it is new enough (Raspberry Pi OS trixie: 20.19)", () => {
    assert.equal(source('20.19.2+dfsg-1'), 'distribution');
    assert.equal(source('22.12.0+dfsg-3'), 'distribution');
  });

  it("downloads from nodejs.org when the distribution's is older (bookworm: 18) or missing", () => {
    assert.equal(source('18.19.0+dfsg-6~deb12u2'), 'download');
    assert.equal(source('20.18.3+dfsg-1'), 'download');
    assert.equal(source('(none)'), 'download');
    assert.equal(source(''), 'download');
  });

  it('downloads the release SNAPBACK_NODE_VERSION names even when the distribution has one', () => {
    assert.equal(source('20.19.2+dfsg-1', { SNAPBACK_NODE_VERSION: 'v20.19.5' }), 'download');
  });
});
