/** test/helpers/wait.ts: waitFor returns the first truthy value, retries a check that throws, and names what it waited for when it gives up. */
import assert from 'node:assert/strict';
import { waitFor } from '../helpers/wait.js';

describe('waitFor', () => {
  it('returns the first truthy value the check gives', async () => {
    let n = 0;
    assert.equal(await waitFor('the third call', () => (++n >= 3 ? `call ${n}` : null)), 'call 3');
  });

  it('tries a check that throws again', async () => {
    let n = 0;
    const v = await waitFor('a check that fails twice', async () => {
      if (++n < 3) throw new Error('not yet');
      return n;
    });
    assert.equal(v, 3);
  });

  it('gives up after the timeout, naming what it waited for and the last error', async () => {
    await assert.rejects(
      waitFor(
        'the impossible',
        () => {
          throw new Error('still broken');
        },
        100,
      ),
      /timed out after 100 ms waiting for the impossible \(last error: still broken\)/,
    );
    await assert.rejects(waitFor('nothing', () => false, 50), /waiting for nothing$/);
  });
});
