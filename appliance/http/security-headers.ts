/**
 * The security headers of every reply of the web UI and API (the appliance's and the console's):
 * a strict Content-Security-Policy (own scripts and styles only), no framing, no referrer,
 * same-origin resources, a locked-down Permissions-Policy, HSTS over TLS only, and COOP where
 * browsers honour it.
 */
import type { RequestHandler } from 'express';
import express from 'express';
import helmet from 'helmet';
import { hostOfHeader, isLoopbackHost } from './http-util.js';

export function securityHeaders(): RequestHandler {
  const router = express.Router();
  router.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          fontSrc: ["'self'"],
          manifestSrc: ["'self'"],
          baseUri: ["'none'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
        },
      },
      xFrameOptions: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      // COOP only where browsers honour it (below): on plain HTTP beyond localhost Chromium
      // ignores it and logs an error on every page.
      crossOriginOpenerPolicy: false,
      crossOriginResourcePolicy: { policy: 'same-origin' },
      // HSTS only over TLS (below): on plain HTTP it would be meaningless and misleading.
      strictTransportSecurity: false,
    }),
  );
  router.use((req, res, next) => {
    res.setHeader('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), usb=(), payment=()');
    if (req.secure) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    if (req.secure || isLoopbackHost(hostOfHeader(req.headers.host))) res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    next();
  });
  return router;
}
