/**
 * One process of simulated appliances for the fleet benchmark: node fleet-sim-entry.js URL FROM
 * COUNT connects appliances bench-FROM … bench-(FROM+COUNT-1) (light MQTT clients speaking the
 * fleet protocol, test/helpers/protocol-appliance.ts), prints "ready" once all are online, and
 * stays until its stdin closes.
 */
import { ProtocolAppliance } from '../test/helpers/protocol-appliance.js';

const [url, fromArg, countArg] = process.argv.slice(2);
if (!url || !fromArg || !countArg) throw new Error('usage: fleet-sim-entry URL FROM COUNT');
const from = Number(fromArg);
const count = Number(countArg);
const fleet: ProtocolAppliance[] = [];
for (let i = 0; i < count; i += 25) {
  const batch = Array.from({ length: Math.min(25, count - i) }, (_, k) => ProtocolAppliance.connect({ url, name: fleetName(from + i + k) }));
  fleet.push(...(await Promise.all(batch)));
}
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void Promise.all(fleet.map((a) => a.close())).finally(() => process.exit(0));
});

function fleetName(i: number): string {
  return `bench-${String(i).padStart(4, '0')}`;
}
