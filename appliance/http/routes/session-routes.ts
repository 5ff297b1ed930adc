/**
 * Host sessions: ending one, and the history.
 *   POST /api/session/end            {wait?: boolean}   audit: session.end
 *   GET  /api/sessions               session history
 *   GET  /api/export/sessions.csv    the session history as CSV
 */
import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { childLogger } from '../../logger.js';
import type { SessionRecord } from '../../session/appliance-service.js';
import { parseBody, sendFailure, validate } from '../http-util.js';
import { auditAs, needPrincipal, type RouteDeps } from '../route-context.js';

const log = childLogger('api');

const endSchema = z.object({ wait: z.boolean().optional() }).strict();
const noQuery = z.object({}).strict();

export function sessionRoutes({ service }: RouteDeps): Router {
  const router = express.Router();
  const json = express.json({ limit: '16kb' });

  router.post('/api/session/end', auditAs('session.end'), json, (req: Request, res: Response) => {
    const body = parseBody(endSchema, req.body, res);
    if (!body) return;
    const p = service.endSession('api');
    if (body.wait) {
      p.then((record) => res.json({ ended: record, status: service.status() }), (err: unknown) => sendFailure(res, err));
    } else {
      p.catch((err: unknown) => log.error({ err }, 'session end failed'));
      res.status(202).json({ accepted: true });
    }
  });

  router.get('/api/sessions', (_req, res) => {
    res.json({ sessions: service.sessions() });
  });

  router.get('/api/export/sessions.csv', (req, res) => {
    validate(noQuery, req.query, 'query');
    needPrincipal(res);
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader('Content-Disposition', 'attachment; filename="snapback-sessions.csv"');
    res.send(sessionsCsv(service.sessions()));
  });

  return router;
}

export const SESSION_CSV_COLUMNS = [
  'number',
  'startedAt',
  'endedAt',
  'endReason',
  'mode',
  'regionsWritten',
  'bytesWritten',
  'sessionEndMs',
  'restoreMs',
  'events',
] as const;

export function sessionsCsv(list: SessionRecord[]): string {
  const rows = [SESSION_CSV_COLUMNS.join(',')];
  for (const s of [...list].sort((a, b) => a.number - b.number)) {
    rows.push(
      [
        s.number,
        s.startedAt,
        s.endedAt ?? '',
        s.endReason ?? '',
        s.mode,
        s.regionsWritten,
        s.bytesWritten,
        s.sessionEndMs ?? '',
        s.restoreMs ?? '',
        s.events.map((e) => `${e.at} ${e.what}`).join('; '),
      ]
        .map(csvField)
        .join(','),
    );
  }
  return rows.join('\r\n') + '\r\n';
}

function csvField(v: string | number): string {
  let s = String(v);
  // A spreadsheet would run a cell that starts like a formula.
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
