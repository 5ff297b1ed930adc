/**
 * The HTTP side's one error convention and small helpers: every error reply is
 * `{"error": CODE, "message": "…"}` (sendError, from HttpError, SnapbackError or a body-parser
 * error in errorHandler); zod validation answers 400 BAD_ARGUMENT naming what is wrong.
 */
import type { NextFunction, Request, Response } from 'express';
import type { z } from 'zod';
import { isSnapbackError, type ErrorCode } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** Error replies, everywhere: `{"error": CODE, "message": "…"}`. */
export function sendError(res: Response, status: number, code: string, message: string): void {
  if (res.headersSent) return;
  res.status(status).json({ error: code, message });
}

/** Parses `value` with `schema`; throws HttpError 400 (BAD_ARGUMENT) naming what is wrong. */
export function validate<S extends z.ZodTypeAny>(schema: S, value: unknown, where: 'body' | 'query' | 'params'): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError(400, 'BAD_ARGUMENT', formatZodIssues(r.error, where));
  return r.data as z.infer<S>;
}

const statusOfCode: Partial<Record<ErrorCode, number>> = {
  BAD_ARGUMENT: 400,
  OUT_OF_RANGE: 400,
  MANIFEST_INVALID: 400,
  PARTITION_TABLE_CORRUPT: 422,
  READ_ONLY: 409,
  BUSY: 409,
  STATE_LOCKED: 409,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  IN_USE: 409,
  NOT_SUPPORTED: 501,
  CLOSED: 503,
  NO_SPACE: 507,
  REMOTE_ERROR: 502,
};

/** Express error handler: HttpError, SnapbackError, body-parser errors; the rest is a 500. */
export function errorHandler(onInternal: (err: unknown, req: Request) => void) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    if (err instanceof HttpError) {
      for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
      sendError(res, err.status, err.code, err.message);
      return;
    }
    if (isSnapbackError(err)) {
      const status = statusOfCode[err.code] ?? 500;
      if (status >= 500) onInternal(err, req);
      sendError(res, status, err.code, err.message);
      return;
    }
    const e = err as { type?: string; status?: number; message?: string };
    if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      // body-parser: malformed JSON, too large, wrong charset …
      const code = e.type === 'entity.too.large' ? 'TOO_LARGE' : 'BAD_ARGUMENT';
      const msg = e.type === 'entity.parse.failed' ? 'body: malformed JSON' : (e.message ?? 'bad request');
      sendError(res, e.status, code, msg);
      return;
    }
    onInternal(err, req);
    sendError(res, 500, 'INTERNAL', 'internal error');
  };
}

/** Wraps an async handler so that a rejection reaches the error handler. */
export function asyncHandler(fn: (req: Request, res: Response, next: NextFunction) => Promise<unknown>) {
  return (req: Request, res: Response, next: NextFunction): void => {
    fn(req, res, next).catch(next);
  };
}

/** Keys whose values never go into the audit log. */
const SECRET_KEY = /pass(word)?|secret|token/i;

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 4) return '…';
  if (Array.isArray(value)) return value.slice(0, 20).map((v) => redact(v, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
    return out;
  }
  if (typeof value === 'string' && value.length > 200) return value.slice(0, 200) + '…';
  return value;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (/^::ffff:127\./.test(h)) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The host part of a Host header ("[::1]:8080" → "::1", "pi.local:80" → "pi.local"). */
export function hostOfHeader(hostHeader: string | undefined): string {
  if (!hostHeader) return '';
  if (hostHeader.startsWith('[')) return hostHeader.slice(1, hostHeader.indexOf(']'));
  const i = hostHeader.lastIndexOf(':');
  return i >= 0 && hostHeader.indexOf(':') === i ? hostHeader.slice(0, i) : hostHeader;
}
