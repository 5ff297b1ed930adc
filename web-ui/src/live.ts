/**
 * The appliance's live state (the shared stream client, live-stream.ts, with the daemon's events:
 * 'status', 'regions', 'session-ended', 'audit', 'settings', 'model-verify'), and the latest
 * status for pages that open after it came.
 */
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { liveStream } from './live-stream.js';

export const live = liveStream(['status', 'regions', 'session-ended', 'audit', 'settings', 'model-verify']);
export const on = live.on;

export let latestStatus: ApplianceStatus | null = null;
live.on<ApplianceStatus>('status', (s) => (latestStatus = s));

/** A status the page fetched itself: kept as the latest and handed to every page. */
export function setStatus(s: ApplianceStatus): void {
  live.emit('status', s);
}
