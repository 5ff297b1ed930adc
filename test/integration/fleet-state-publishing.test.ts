/**
 * How the management component publishes the appliance's state, seen on a real mosquitto: a
 * burst of status changes becomes a few retained state messages (throttled), the last change
 * always gets out, and with nothing changing a heartbeat republishes the state with a newer
 * timestamp. In-process component against the test's small appliance service.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { ApplianceState } from '../../appliance/api/fleet.js';
import { ManagementComponent } from '../../appliance/management/management-component.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { sleep, waitFor } from '../helpers/wait.js';

describe('fleet: state publishing (throttle and heartbeat)', function () {
  this.timeout(60_000);
  let dir: string;
  let broker: Mosquitto;
  let watcher: MqttClient;
  let component: ManagementComponent;
  const states: ApplianceState[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-fleet-state-'));
    broker = await Mosquitto.start();
    watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    states.length = 0;
    watcher.on('message', (topic, payload) => {
      if (topic === 'snapback/pc1/state') states.push(JSON.parse(payload.toString()) as ApplianceState);
    });
    await watcher.subscribeAsync('snapback/pc1/state', { qos: 1 });
  });

  afterEach(async () => {
    await component?.stop();
    await watcher.endAsync(true);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a burst of changes is published throttled, and the last change always gets out', async () => {
    const service = new FakeAppliance();
    const MIN_INTERVAL = 300;
    component = new ManagementComponent({
      service,
      stateDir: dir,
      audit: async () => undefined,
      commandLine: { url: broker.url, applianceName: 'pc1' },
      timing: { stateMinIntervalMs: MIN_INTERVAL, heartbeatMs: 600_000 },
    });
    await component.start();
    await waitFor('the first state', () => states.length >= 1);
    const first = states.length;

    const t0 = Date.now();
    for (let i = 0; i < 200; i++) {
      service.sessionNumber++;
      service.emit('status');
      await sleep(2);
    }
    const elapsed = Date.now() - t0;
    const final = service.sessionNumber;
    await waitFor('the last change published', () => states.at(-1)?.session.number === final);
    await sleep(MIN_INTERVAL * 2); // nothing more is pending
    const published = states.length - first;
    // At most one per interval during the burst, plus the trailing one: far fewer than 200.
    assert.ok(published <= Math.ceil(elapsed / MIN_INTERVAL) + 2, `${published} state messages for 200 changes in ${elapsed} ms`);
    assert.ok(published >= 1);
    // Each published state is a real status, in order.
    const numbers = states.slice(first).map((s) => s.session.number);
    assert.deepEqual(numbers, [...numbers].sort((a, b) => a - b));
  });

  it('with nothing changing, a heartbeat republishes the same state with a newer timestamp', async () => {
    const service = new FakeAppliance();
    component = new ManagementComponent({
      service,
      stateDir: dir,
      audit: async () => undefined,
      commandLine: { url: broker.url, applianceName: 'pc1' },
      timing: { stateMinIntervalMs: 100, heartbeatMs: 300 },
    });
    await component.start();
    await waitFor('three states', () => states.length >= 3);
    const [a, b, c] = states as [ApplianceState, ApplianceState, ApplianceState];
    const body = (s: ApplianceState): string => JSON.stringify({ ...s, updatedAt: undefined });
    assert.equal(body(b), body(a));
    assert.equal(body(c), body(a));
    assert.ok(b.updatedAt > a.updatedAt && c.updatedAt > b.updatedAt, `${a.updatedAt} ${b.updatedAt} ${c.updatedAt}`);
  });
});
