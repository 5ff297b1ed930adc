/**
 * The manifest a server keeps beside a model image (IMAGE.manifest.json), fetched before the
 * image: with one, every region is verified as it arrives and the model can be provisioned
 * lazily; without one (404), the image is downloaded whole and hashed here.
 */
import { rm } from 'node:fs/promises';
import { Manifest } from './manifest.js';
import { HttpRangeSource, RemoteError, manifestUrlFor, type RemoteInfo, type RetryPolicy } from './http-range-source.js';
import { SnapbackError } from '../errors.js';

export interface RemoteImage {
  info: RemoteInfo;
  /** The manifest beside the image, or null when the server has none. */
  manifest: Manifest | null;
}

/**
 * Asks the server for the image's size and Range support and fetches its manifest into
 * `manifestPath` (removed again when there is none). A manifest for another size is refused.
 */
export async function fetchRemoteImage(source: HttpRangeSource, manifestPath: string, retry: RetryPolicy): Promise<RemoteImage> {
  const info = await source.probe(retry.signal).catch(async (err: unknown) => {
    if (err instanceof RemoteError && err.retryable) return source.probe(retry.signal);
    throw err;
  });
  const manifestSource = source.sibling(manifestUrlFor(source.url));
  let manifest: Manifest | null = null;
  try {
    await manifestSource.downloadTo(manifestPath, retry);
    manifest = await Manifest.load(manifestPath);
  } catch (err) {
    await rm(manifestPath, { force: true });
    if (!(err instanceof RemoteError && err.status === 404)) throw err;
  } finally {
    manifestSource.close();
  }
  if (manifest && manifest.size !== info.size) {
    await rm(manifestPath, { force: true });
    throw new SnapbackError('MANIFEST_INVALID', `the manifest beside ${source.url.href} is for ${manifest.size} bytes but the server's image holds ${info.size}`, { expected: manifest.size, actual: info.size });
  }
  return { info, manifest };
}
