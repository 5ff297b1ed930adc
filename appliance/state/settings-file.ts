/**
 * Settings files an administrator edits by hand (DIR/gpio.json, DIR/gadget.json): read, parsed
 * and checked against a strict schema, so that a misspelt key ("buton") is an error naming the
 * key and the file rather than a silently ignored line. A missing file means the defaults.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { z } from 'zod';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';

/**
 * Returns the file's settings (the schema's defaults filled in), or the defaults
 * (`schema.parse({})`) when there is no file. Throws BAD_ARGUMENT naming the file when it is
 * not JSON or does not fit the schema.
 */
export function readJsonSettings<S extends z.ZodTypeAny>(path: string, schema: S): z.output<S> {
  let raw: unknown = {};
  if (existsSync(path)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new SnapbackError('BAD_ARGUMENT', `${path} cannot be read: ${(err as Error).message}`, { path });
    }
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new SnapbackError('BAD_ARGUMENT', `${path} is not valid JSON: ${(err as Error).message}`, { path });
    }
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new SnapbackError('BAD_ARGUMENT', `${path}: ${formatZodIssues(r.error)}`, { path });
  return r.data as z.output<S>;
}
