/**
 * Password hashing (scrypt, from node:crypto) and API-token secrets.
 *
 * Stored password form: `scrypt$<log2 N>$<r>$<p>$<salt, base64>$<key, base64>`, so the cost can
 * be raised later without invalidating existing hashes.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
const LOG2_N = 15; // N = 32768: ≈ 0.1 s on a Pi 4 core, 32 MiB of memory
const R = 8;
const P = 1;
const KEY_LEN = 32;
function scrypt(password, salt, keyLen, opts) {
    return new Promise((resolve, reject) => {
        scryptCb(password, salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key)));
    });
}
function scryptOptions(log2N, r, p) {
    return { N: 2 ** log2N, r, p, maxmem: 256 * 2 ** log2N * r + 1024 * 1024 };
}
export async function hashPassword(password) {
    const salt = randomBytes(16);
    const key = await scrypt(password, salt, KEY_LEN, scryptOptions(LOG2_N, R, P));
    return ['scrypt', LOG2_N, R, P, salt.toString('base64'), key.toString('base64')].join('$');
}
/** True when `password` matches `stored`; false for a wrong password or an unusable hash. */
export async function verifyPassword(password, stored) {
    const parts = stored.split('$');
    if (parts.length !== 6 || parts[0] !== 'scrypt')
        return false;
    const log2N = Number(parts[1]);
    const r = Number(parts[2]);
    const p = Number(parts[3]);
    if (![log2N, r, p].every((n) => Number.isInteger(n) && n > 0) || log2N > 22 || r > 32 || p > 16)
        return false;
    const salt = Buffer.from(parts[4] ?? '', 'base64');
    const expected = Buffer.from(parts[5] ?? '', 'base64');
    if (salt.length < 8 || expected.length < 16)
        return false;
    const key = await scrypt(password, salt, expected.length, scryptOptions(log2N, r, p));
    return timingSafeEqual(key, expected);
}
/** SHA-256, hex: for secrets with enough entropy of their own (API tokens). */
export function sha256Hex(s) {
    return createHash('sha256').update(s, 'utf8').digest('hex');
}
/** Constant-time comparison of two strings (false when their lengths differ). */
export function safeEqual(a, b) {
    const ba = Buffer.from(a, 'utf8');
    const bb = Buffer.from(b, 'utf8');
    return ba.length === bb.length && timingSafeEqual(ba, bb);
}
export function randomToken(bytes = 32) {
    return randomBytes(bytes).toString('base64url');
}
/** API tokens look like `sbk_<id>_<secret>`; the id finds the record, the secret's hash proves it. */
export function newApiToken() {
    const id = randomBytes(6).toString('hex');
    const secret = randomToken(32);
    return { id, secret, token: `sbk_${id}_${secret}` };
}
export function parseApiToken(token) {
    const m = /^sbk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/.exec(token);
    return m ? { id: m[1], secret: m[2] } : null;
}
//# sourceMappingURL=passwords.js.map