/**
 * A model library for the web UI tests against the fake appliance: a real ModelLibrary and
 * ModelService in a temporary state directory holding what a lab's library looks like — the
 * active model, a version captured from it, and a URL model still downloading (its progress
 * made up, as the fake appliance makes up the host's writes).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelDownload } from '../../appliance/api/models.js';
import { ModelService } from '../../appliance/session/model-service.js';
import { createManifest } from '../../appliance/storage/manifest.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { patternBytes } from './prng.js';

const MIB = 1 << 20;

export async function fakeModelLibrary(dir: string): Promise<ModelService> {
  const library = new ModelLibrary(new StateDir(join(dir, 'library-state')));
  const image = join(dir, 'lab-image-2024.img');
  await writeFile(image, patternBytes(4 * MIB, 31));
  const active = await library.importFile(image, { name: 'lab-image-2024' });

  // A version captured from it in a maintenance session.
  const staging = await library.stage('lab-image-2025-01');
  const next = patternBytes(4 * MIB, 32);
  await writeFile(staging.imagePath, next);
  const captured = await createManifest(staging.imagePath, { name: 'lab-image-2025-01' });
  await staging.commit(captured, { source: { kind: 'capture', session: 12 }, parent: active.record.id });

  // A model from a URL, usable before it has arrived.
  await writeFile(join(dir, 'win11.img'), patternBytes(8 * MIB, 33));
  const remote = await createManifest(join(dir, 'win11.img'), { name: 'win11-lab', regionSize: 128 << 10 });
  const lazy = await library.createIncomplete(remote, { name: 'win11-lab', source: { kind: 'url', url: 'https://images.lab.example/win11-lab.img' } });
  const download: ModelDownload = {
    state: 'running',
    regionsTotal: remote.regionCount,
    regionsDone: 23,
    bytesDone: 23 * (128 << 10),
    bytesPerSecond: 12.5 * MIB,
    rateLimitBytesPerSecond: null,
    lastError: null,
  };
  return new ModelService({ library, activeModelId: () => active.record.id, downloadOf: (id) => (id === lazy.record.id ? download : null) });
}
