/**
 * The web UI's pages and built assets (everything but the login page and its assets needs a
 * login; the gate in http-component.ts decides).
 *   GET /login, GET /, GET /index.html, GET /assets/…
 */
import { join } from 'node:path';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { principalOf } from '../route-context.js';

export function pageRoutes(publicDir: string): Router {
  const r = express.Router();
  const page = (file: string) => (_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(join(publicDir, file), (err) => (err ? next(err) : undefined));
  };
  r.get('/login', (req, res, next) => {
    if (principalOf(res)?.kind === 'login') return res.redirect(303, '/');
    page('login.html')(req, res, next);
  });
  r.get(['/', '/index.html'], page('index.html'));
  r.use(
    '/assets',
    express.static(join(publicDir, 'assets'), {
      index: false,
      dotfiles: 'ignore',
      fallthrough: true,
      setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache'),
    }),
  );
  return r;
}
