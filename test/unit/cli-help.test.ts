/**
 * `snapback help COMMAND` as the README promises it: a command's flags with their defaults, for
 * the two-word commands (`session end`, `model manifest`) too, and a clear refusal of a command
 * that does not exist.
 */
import assert from 'node:assert/strict';
import { snapback } from '../helpers/cli.js';

describe('snapback help COMMAND', () => {
  it('snapback help session end shows the flags of session end (--wait), not the session group', () => {
    const r = snapback(['help', 'session', 'end']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: snapback session end /m);
    assert.match(r.stdout, /--wait/);
  });

  it('snapback help model manifest shows the flags of model manifest with their defaults', () => {
    const r = snapback(['help', 'model', 'manifest']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: snapback model manifest /m);
    assert.match(r.stdout, /--hash <HASH>.*default: "blake3"/s);
  });

  it('snapback help of a one-word command shows its flags (help serve names --http-listen and its default)', () => {
    const r = snapback(['help', 'serve']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: snapback serve /m);
    assert.match(r.stdout, /--http-listen <HOST:PORT>.*127\.0\.0\.1:8080/s);
  });

  it('snapback help of an unknown command says which, in one line, and exits 2', () => {
    const r = snapback(['help', 'sesion']);
    assert.equal(r.code, 2, r.stdout);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^snapback: unknown command 'sesion'/);
  });
});
