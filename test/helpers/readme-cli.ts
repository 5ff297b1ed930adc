/**
 * The README's CLI block is the reference rendered from the CLI definition. This module finds
 * the block between its markers, and run as a script (`npm run readme:cli`) rewrites it from
 * the definition; test/unit/cli-reference.test.ts fails when the two differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { buildProgram } from '../../appliance/cli/program.js';
import { renderReference } from '../../appliance/cli/reference.js';

export const README = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'README.md');
const BEGIN = '<!-- cli-reference: generated from appliance/cli/program.ts by `npm run readme:cli` -->\n```\n';
const END = '```\n<!-- /cli-reference -->';

/** The block as the definition renders it. */
export function expectedCliBlock(): string {
  return renderReference(buildProgram());
}

/** The block as the README has it; throws if the markers are missing. */
export function readmeCliBlock(readme = readFileSync(README, 'utf8')): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END, start);
  if (start < 0 || end < 0) throw new Error(`README.md has no CLI reference block (${BEGIN.trim()} … ${END})`);
  return readme.slice(start + BEGIN.length, end);
}

export function writeReadmeCliBlock(): void {
  const readme = readFileSync(README, 'utf8');
  const old = readmeCliBlock(readme);
  const start = readme.indexOf(BEGIN) + BEGIN.length;
  writeFileSync(README, readme.slice(0, start) + expectedCliBlock() + readme.slice(start + old.length));
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) writeReadmeCliBlock();
