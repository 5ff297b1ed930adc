/**
 * Enrollment: the appliance redeems the one-time code the console issued, once, over HTTPS
 * (POST CONSOLE/api/enroll), for its broker URL, login and the broker's CA. http:// is accepted
 * for a console on loopback only (tests, a console on the same machine).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { enrollReplySchema, type EnrollReply, type EnrollRequest } from '../api/fleet.js';
import { SnapbackError } from '../errors.js';

/** The console answered and refused (a wrong, used or expired code): trying again cannot help. */
export class EnrollmentRefusedError extends SnapbackError {
  constructor(message: string) {
    super('BAD_ARGUMENT', message);
    this.name = 'EnrollmentRefusedError';
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i;

export async function redeemEnrollmentCode(consoleUrl: string, body: EnrollRequest, opts: { ca?: string | null; timeoutMs?: number } = {}): Promise<EnrollReply> {
  const url = new URL('api/enroll', consoleUrl.endsWith('/') ? consoleUrl : `${consoleUrl}/`);
  if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname)) throw new EnrollmentRefusedError(`enrollment needs https:// (the reply holds the broker login); http:// only works for a console on loopback, not ${url.host}`);
  const payload = JSON.stringify(body);
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), Accept: 'application/json' },
        timeout: opts.timeoutMs ?? 15_000,
        ...(url.protocol === 'https:' && opts.ca ? { ca: opts.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 1024 * 1024) req.destroy(new Error('the console sent more than 1 MiB'));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('the console did not answer in time')));
    req.on('error', reject);
    req.end(payload);
  }).catch((err: unknown) => {
    throw new SnapbackError('IO_ERROR', `enrolling at ${url.origin}: ${(err as Error).message}`, undefined, { cause: err });
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (status >= 400 && status < 500) {
    const message = json && typeof json === 'object' && 'message' in json ? String((json as { message: unknown }).message) : text.slice(0, 200);
    throw new EnrollmentRefusedError(`the console at ${url.origin} refused the enrollment code (HTTP ${status}): ${message}`);
  }
  if (status < 200 || status >= 300) throw new SnapbackError('IO_ERROR', `enrolling at ${url.origin}: HTTP ${status}`);
  const reply = enrollReplySchema.safeParse(json);
  if (!reply.success) throw new SnapbackError('IO_ERROR', `enrolling at ${url.origin}: the reply is not an enrollment (${reply.error.issues[0]?.message ?? 'invalid'})`);
  if (!/^mqtts?:\/\//i.test(reply.data.mqttUrl)) throw new SnapbackError('IO_ERROR', `enrolling at ${url.origin}: the console named a broker that is not mqtt:// or mqtts:// (${reply.data.mqttUrl})`);
  return reply.data;
}
