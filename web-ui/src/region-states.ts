/**
 * Region states in the compact map (RegionState in appliance/api/regions.ts). Repeated as values
 * here because the browser code imports only types from the wire contract (no bundler).
 */
export const REGION_CLEAN = 0;
export const REGION_WRITTEN = 1;
export const REGION_PENDING = 2;
