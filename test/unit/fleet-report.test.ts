/**
 * What an appliance reports to the fleet, made from its status: the state's errors name every
 * part with a problem (a failed part, a stalled download running on) except the fleet link
 * itself, the restore's and the state file's errors; a finished download is not reported.
 */
import assert from 'node:assert/strict';
import type { ModelDownload } from '../../appliance/api/models.js';
import { applianceInfo, applianceState } from '../../appliance/management/fleet-report.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';

const download = (state: ModelDownload['state']): ModelDownload => ({ state, regionsTotal: 10, regionsDone: 4, bytesDone: 4096, bytesPerSecond: 100, rateLimitBytesPerSecond: null, lastError: state === 'stalled' ? 'HTTP 503' : null });

describe('fleet report: info and state from the status', () => {
  it('the state names every part with a problem but the fleet link, and the restore and state-file errors', () => {
    const s = new FakeAppliance().status();
    s.components = [
      { name: 'storage', essential: true, state: 'running', problem: null },
      { name: 'gpio', essential: false, state: 'failed', problem: 'bad gpio.json' },
      { name: 'model-download', essential: false, state: 'running', problem: 'stalled: HTTP 503' },
      { name: 'management', essential: false, state: 'failed', problem: 'reconnecting: ECONNREFUSED' },
    ];
    s.hydration.lastError = 'no space left';
    s.stateDir.writeError = 'EIO';
    const st = applianceState(s, null);
    assert.deepEqual(st.errors, ['gpio: bad gpio.json', 'model-download: stalled: HTTP 503', 'restore: no space left', 'state file: EIO']);
    assert.deepEqual([st.mode, st.session.number, st.model.id], [s.mode, s.session.number, s.model.id]);
  });

  it('a download still arriving is in the state; a finished one is not', () => {
    const s = new FakeAppliance().status();
    assert.equal(applianceState(s, download('running')).download?.regionsDone, 4);
    assert.equal(applianceState(s, download('stalled')).download?.lastError, 'HTTP 503');
    assert.equal(applianceState(s, download('done')).download, null);
    assert.equal(applianceState(s, null).download, null);
  });

  it('the info is the name, version, disk size and start time', () => {
    const s = new FakeAppliance().status();
    assert.deepEqual(applianceInfo('lab1', s), { name: 'lab1', version: s.daemon.version, diskSize: s.disk.size, startedAt: s.daemon.startedAt });
  });
});
