/** Region states in the region map (two bits each on the wire). */
export const RegionState = { clean: 0, written: 1, pending: 2 };
// Events emitted by an ApplianceService:
//   'status'        () — something in status() changed (throttled by the emitter)
//   'regions'       (runs: RegionRun[]) — these regions now have these states ([start, length, state])
//   'regions-replaced' () — the whole map changed (a session ended): fetch regionMap() again
//   'session-ended' (record: SessionRecord)
//# sourceMappingURL=appliance-service.js.map