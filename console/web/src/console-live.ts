/**
 * The console's live updates (the shared stream client, live-stream.ts): 'appliances' (the
 * records that changed), 'commands' (made or changed) and 'audit' (new entries).
 */
import { liveStream } from './live-stream.js';

export const live = liveStream(['appliances', 'commands', 'audit']);
export const on = live.on;
