/**
 * A protocol appliance (protocol-appliance.ts) as its own process, for tests that kill it with
 * SIGKILL: node protocol-appliance-main.js URL NAME [USER PASSWORD]. Prints "ready" once online;
 * prints each command it runs as a JSON line.
 */
import { ProtocolAppliance } from './protocol-appliance.js';

const [url, name, username, password] = process.argv.slice(2);
if (!url || !name) throw new Error('usage: protocol-appliance-main URL NAME [USER PASSWORD]');
const a = await ProtocolAppliance.connect({ url, name, ...(username !== undefined ? { username, password: password ?? '' } : {}) });
const ran = a.ran.push.bind(a.ran);
a.ran.push = (...cmds) => {
  for (const c of cmds) process.stdout.write(JSON.stringify(c) + '\n');
  return ran(...cmds);
};
process.stdout.write('ready\n');
