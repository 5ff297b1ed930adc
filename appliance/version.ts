/**
 * The appliance's version, read once from the package.json that ships beside `dist/` (in the
 * repository and in the image's /opt/snapback alike), so there is one place to change it.
 */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
  return pkg.version;
}

export const VERSION: string = readVersion();
