/**
 * Builds the web UI's assets into dist/web-ui/public: copies web-ui/static as it is.
 * (Placeholder until the web UI lands; the daemon serves whatever this produces.)
 */
import { cpSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/web-ui
const root = join(here, '..', '..');
const out = join(here, 'public');
mkdirSync(out, { recursive: true });
cpSync(join(root, 'web-ui', 'static'), out, { recursive: true });
