/**
 * The control API (issue 3): JSON endpoints over the daemon's HTTP listener and the CLI's
 * control socket. Authentication, CSRF and the audit log are mounted in front of this router
 * by http-component.ts; here every body is validated (zod) and a bad one gets 400 with a
 * message and changes nothing.
 *   GET  /api/status            status (mode, restore mode, session, regions, hydration, host)
 *   POST /api/session/end       {wait?: boolean} — end the host session
 *   POST /api/mode              {mode: "frozen"|"thawed"}
 *   POST /api/restore-mode      {restoreMode: "instant"|"eager"}
 *   POST /api/hydration         {rateBytesPerSecond: number|null}
 *   GET  /api/regions           the region map, compact: runs or two bits per region, base64 (0 clean, 1 written, 2 pending)
 *   GET  /api/sessions          session history
 *   GET  /metrics               Prometheus text
 */
import express from 'express';
import { z } from 'zod';
import { Registry, Gauge, collectDefaultMetrics } from 'prom-client';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
const log = childLogger('api');
const endSchema = z.object({ wait: z.boolean().optional() }).strict();
const modeSchema = z.object({ mode: z.enum(['frozen', 'thawed']) }).strict();
const restoreModeSchema = z.object({ restoreMode: z.enum(['instant', 'eager']) }).strict();
const hydrationSchema = z.object({ rateBytesPerSecond: z.number().int().positive().max(2 ** 40).nullable() }).strict();
function parse(schema, body, res) {
    const r = schema.safeParse(body ?? {});
    if (!r.success) {
        res.status(400).json({ error: 'BAD_REQUEST', message: r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') });
        return null;
    }
    return r.data;
}
export function httpStatusFor(err) {
    if (!(err instanceof SnapbackError))
        return 500;
    switch (err.code) {
        case 'BAD_ARGUMENT':
            return 400;
        case 'BUSY':
            return 409;
        case 'NOT_SUPPORTED':
            return 501;
        default:
            return 500;
    }
}
function fail(res, err) {
    const status = httpStatusFor(err);
    if (status >= 500)
        log.error({ err }, 'API request failed');
    res.status(status).json({ error: err instanceof SnapbackError ? err.code : 'INTERNAL', message: err.message });
}
/** Prometheus gauges, all set from one status snapshot per scrape. */
function makeMetrics(service) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'snapback_process_' });
    const gauges = [];
    const g = (name, help, get) => gauges.push([new Gauge({ name, help, registers: [registry] }), get]);
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
            for (const [gauge, get] of gauges)
                gauge.set(get(s));
        },
    };
}
export function createApiRouter(service) {
    const router = express.Router();
    const metrics = makeMetrics(service);
    const json = express.json({ limit: '16kb' });
    router.get('/api/status', (_req, res) => {
        res.json(service.status());
    });
    router.post('/api/session/end', json, (req, res) => {
        const body = parse(endSchema, req.body, res);
        if (!body)
            return;
        const p = service.endSession('api');
        if (body.wait) {
            p.then((record) => res.json({ ended: record, status: service.status() }), (err) => fail(res, err));
        }
        else {
            p.catch((err) => log.error({ err }, 'session end failed'));
            res.status(202).json({ accepted: true });
        }
    });
    router.post('/api/mode', json, (req, res) => {
        const body = parse(modeSchema, req.body, res);
        if (!body)
            return;
        service.setMode(body.mode).then(() => res.json({ mode: body.mode }), (err) => fail(res, err));
    });
    router.post('/api/restore-mode', json, (req, res) => {
        const body = parse(restoreModeSchema, req.body, res);
        if (!body)
            return;
        service.setRestoreMode(body.restoreMode).then(() => res.json({ restoreMode: body.restoreMode }), (err) => fail(res, err));
    });
    router.post('/api/hydration', json, (req, res) => {
        const body = parse(hydrationSchema, req.body, res);
        if (!body)
            return;
        service.setHydrationRate(body.rateBytesPerSecond);
        res.json({ rateBytesPerSecond: body.rateBytesPerSecond });
    });
    router.get('/api/regions', (_req, res, next) => {
        service.regionMap().then((map) => {
            const st = service.status();
            res.json({
                regionSize: st.regions.regionSize,
                count: map.count,
                written: map.written,
                pending: map.pending,
                encoding: map.encoding,
                legend: { 0: 'clean', 1: 'written', 2: 'pending' },
                data: Buffer.from(map.data.buffer, map.data.byteOffset, map.data.byteLength).toString('base64'),
            });
        }, next);
    });
    router.get('/api/sessions', (_req, res) => {
        res.json({ sessions: service.sessions() });
    });
    router.get('/metrics', (_req, res, next) => {
        metrics.refresh();
        metrics.registry.metrics().then((text) => {
            res.type(metrics.registry.contentType).send(text);
        }, next);
    });
    return router;
}
//# sourceMappingURL=api-routes.js.map