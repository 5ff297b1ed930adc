/**
 * Prometheus metrics: GET /metrics (every gauge set from one status snapshot per scrape).
 * prom-client is loaded on the first scrape, not at start: a daemon nobody scrapes does not pay
 * its memory (about 10 MB of a Pi's RSS budget).
 */
import type { Gauge, Registry } from 'prom-client';
import type { ApplianceService, ApplianceStatus } from '../../session/appliance-service.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

async function makeMetrics(service: ApplianceService): Promise<{ registry: Registry; refresh(): void }> {
  const { Gauge, Registry, collectDefaultMetrics } = await import('prom-client');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'snapback_' }); // snapback_process_…, snapback_nodejs_…
  const gauges: [Gauge, (s: ApplianceStatus) => number][] = [];
  const g = (name: string, help: string, get: (s: ApplianceStatus) => number) => gauges.push([new Gauge({ name, help, registers: [registry] }), get]);
  g('snapback_session_number', 'Current host session number', (s) => s.session.number);
  g('snapback_regions_total', 'Regions of the disk', (s) => s.regions.total);
  g('snapback_regions_written', 'Regions written this session', (s) => s.regions.writtenThisSession);
  g('snapback_regions_pending', 'Regions waiting to be restored from the model', (s) => s.regions.pending);
  g('snapback_bytes_changed_session', 'Bytes the host wrote this session', (s) => s.bytesChangedThisSession);
  g('snapback_hydration_running', '1 while a background restore runs', (s) => (s.hydration.running ? 1 : 0));
  g('snapback_hydration_bytes_per_second', 'Current restore speed', (s) => s.hydration.bytesPerSecond);
  g('snapback_frozen', '1 when frozen, 0 when thawed', (s) => (s.mode === 'frozen' ? 1 : 0));
  g('snapback_nbd_clients', 'Connected NBD clients', (s) => s.host.nbdClients);
  g('snapback_disk_io_errors_total', 'I/O errors from the working disk', (s) => s.disk.ioErrors);
  return {
    registry,
    refresh() {
      const s = service.status();
      for (const [gauge, get] of gauges) gauge.set(get(s));
    },
  };
}

export function metricsRoutes(api: ApiRouter, { service }: RouteDeps): void {
  let metrics: ReturnType<typeof makeMetrics> | null = null;
  api.add({
    method: 'get',
    path: '/metrics',
    tag: 'metrics',
    summary: 'Prometheus metrics',
    replies: { 200: { description: 'Prometheus text format', contentType: 'text/plain' } },
    handler: async ({ res }) => {
      metrics ??= makeMetrics(service);
      const m = await metrics;
      m.refresh();
      const text = await m.registry.metrics();
      res.type(m.registry.contentType).send(text);
    },
  });
}
