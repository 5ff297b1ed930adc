/**
 * Talking to the daemon: JSON requests with the session's CSRF token, errors as ApiError.
 * Shared by the login page and the app (both public assets).
 */
import type { AuthState } from '../../appliance/api/auth.js';
import type { ApiErrorBody } from '../../appliance/api/common.js';
// type only: the login page loads this module, and the region map module needs a login
import type { WireRegionMap } from './region-map.js';

let csrfToken: string | null = null;

export function setCsrfToken(t: string | null): void {
  csrfToken = t;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Called when a request finds the login gone (401): the app goes back to the login page. */
let onUnauthenticated: () => void = () => undefined;
export function setUnauthenticatedHandler(fn: () => void): void {
  onUnauthenticated = fn;
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('Content-Type') ?? '';
  const data: unknown = type.includes('json') ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    // Errors are {"error": CODE, "message": "…"} (checked: a proxy may answer otherwise).
    const err = data as Partial<ApiErrorBody> | null;
    const code = typeof err?.error === 'string' ? err.error : `HTTP_${res.status}`;
    const message = typeof err?.message === 'string' ? err.message : res.statusText;
    const e = new ApiError(res.status, code, message);
    if (res.status === 401 && !path.startsWith('/api/auth/')) onUnauthenticated();
    throw e;
  }
  return data as T;
}

/** An upload in flight: its outcome, and a way to stop it. */
export interface Upload<T> {
  done: Promise<T>;
  abort(): void;
}

/**
 * Sends a file as the raw body of a PUT (XMLHttpRequest: fetch cannot report upload progress).
 * The browser streams the file from disk; `onProgress` gets the bytes sent so far.
 */
export function uploadFile<T>(path: string, file: File, onProgress: (sent: number, total: number) => void): Upload<T> {
  const xhr = new XMLHttpRequest();
  const done = new Promise<T>((resolve, reject) => {
    xhr.open('PUT', path);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    if (csrfToken) xhr.setRequestHeader('X-CSRF-Token', csrfToken);
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (ev) => onProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size));
    xhr.addEventListener('load', () => {
      let data: unknown = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(data as T);
        return;
      }
      const err = data as Partial<ApiErrorBody> | null;
      if (xhr.status === 401) onUnauthenticated();
      reject(new ApiError(xhr.status, typeof err?.error === 'string' ? err.error : `HTTP_${xhr.status}`, typeof err?.message === 'string' ? err.message : xhr.statusText));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'NETWORK', 'the connection to the appliance was lost')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'ABORTED', 'the upload was cancelled')));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

export const getJson = <T>(path: string): Promise<T> => request<T>('GET', path);
export const postJson = <T>(path: string, body: unknown = {}): Promise<T> => request<T>('POST', path, body);

export async function authState(): Promise<AuthState> {
  const s = await getJson<AuthState>('/api/auth/state');
  setCsrfToken(s.csrfToken);
  return s;
}

/** The region map: GET /api/regions answers it compact (runs or two bits per region; decodeRegionMap in region-map.ts). */
export function getRegionMap(): Promise<WireRegionMap> {
  return getJson<WireRegionMap>('/api/regions');
}
