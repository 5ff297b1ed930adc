/** Host sessions: ending one, and the history (POST /api/session/end, GET /api/sessions, CSV). */
import { z } from 'zod';
import { sessionEndBodySchema, sessionEndedReplySchema, sessionListSchema, type SessionRecord } from '../../api/sessions.js';
import { childLogger } from '../../logger.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

const log = childLogger('api');

export function sessionRoutes(api: ApiRouter, { service }: RouteDeps): void {
  api.add({
    method: 'post',
    path: '/api/session/end',
    tag: 'sessions',
    summary: 'End the host session (restore what it changed, when frozen); {wait: true} answers once the host may read again',
    audit: 'session.end',
    body: sessionEndBodySchema,
    replies: {
      200: { description: 'With wait: the ended session and the new status', schema: sessionEndedReplySchema },
      202: { description: 'Without wait: the end has started', schema: z.object({ accepted: z.literal(true) }) },
    },
    handler: async ({ body, res }) => {
      const ending = service.endSession('api');
      if (body.wait) return { ended: await ending, status: service.status() };
      ending.catch((err: unknown) => log.error({ err }, 'session end failed'));
      res.status(202).json({ accepted: true });
      return undefined;
    },
  });

  api.add({
    method: 'get',
    path: '/api/sessions',
    tag: 'sessions',
    summary: 'The session history',
    replies: { 200: { description: 'The sessions', schema: sessionListSchema } },
    handler: () => ({ sessions: service.sessions() }),
  });

  api.add({
    method: 'get',
    path: '/api/export/sessions.csv',
    tag: 'sessions',
    summary: 'The session history as CSV',
    replies: { 200: { description: 'CSV, one session per row', contentType: 'text/csv' } },
    handler: ({ res }) => {
      res.setHeader('Content-Type', 'text/csv; charset=utf-8');
      res.setHeader('Content-Disposition', 'attachment; filename="snapback-sessions.csv"');
      res.send(sessionsCsv(service.sessions()));
    },
  });
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
