/**
 * The model library's rows of bench/models.ts, each against its peer measured in the same run:
 *   - importing a model from nginx over loopback, against curl fetching the same file (≥ 0.9×);
 *   - the first read of a region of a lazily provisioned model not fetched yet (latency), against
 *     curl's Range request for the same bytes;
 *   - a switch between two 1 GiB models that differ in 10 % of their regions (time and bytes
 *     moved), against a full copy of the image.
 * A row whose feature is not in this build says so instead of a figure.
 */

export interface LibraryRow {
  id: 'import-url' | 'lazy-first-read' | 'switch';
  label: string;
  measured: boolean;
  /** Why it was not measured. */
  why?: string;
  snapbackText?: string;
  peerText?: string;
  /** Peer's time over ours (higher is better for us). */
  ratio?: number;
  target?: string;
  pass?: boolean;
  figures?: Record<string, number>;
}

export interface LibraryBenchOptions {
  dir: string;
  quick: boolean;
  progress: (line: string) => void;
}

export async function libraryRows(_opts: LibraryBenchOptions): Promise<LibraryRow[]> {
  return [
    { id: 'import-url', label: 'import of a model from nginx over loopback, against curl of the same file', measured: false, why: 'the URL import is not in this build', target: '≥ 0.9×' },
    { id: 'lazy-first-read', label: 'first read of a region of a lazy model not fetched yet (latency)', measured: false, why: 'lazy provisioning is not in this build' },
    { id: 'switch', label: 'switch between two 1 GiB models differing in 10 % of regions, against a full copy', measured: false, why: 'the model switch is not in this build' },
  ];
}
