/**
 * One way to say what is wrong with a value that failed a zod schema: "where.path: message"
 * for each issue, joined with "; ". Used by every place that validates a request, a settings
 * file or a stored file, so that error messages read the same everywhere. Node-free.
 */
import type { ZodError, ZodIssue } from 'zod';

/** At most this many issues are spelled out; the rest are counted. */
const MAX_ISSUES = 5;

/**
 * `where` names the value as the user knows it ("body", "query", a file path); an issue at the
 * top of the value is reported as `where` (or "(root)" without one).
 */
export function formatZodIssues(err: ZodError | readonly ZodIssue[], where?: string): string {
  const issues = Array.isArray(err) ? (err as readonly ZodIssue[]) : (err as ZodError).issues;
  const parts = issues.slice(0, MAX_ISSUES).map((i) => {
    const path = [where, ...i.path.map(String)].filter((p) => p !== undefined && p !== '').join('.');
    return `${path || '(root)'}: ${i.message}`;
  });
  if (issues.length > MAX_ISSUES) parts.push(`and ${issues.length - MAX_ISSUES} more`);
  return parts.join('; ');
}
