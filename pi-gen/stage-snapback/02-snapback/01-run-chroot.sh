#!/bin/bash -e
# Runtime dependencies (onoff's epoll is built here, for the image's architecture). Optional
# dependencies are left out: better-sqlite3 is the console's store, which an appliance never runs.
cd /opt/snapback
npm ci --omit=dev --omit=optional --no-audit --no-fund
npm cache clean --force
systemctl enable snapback.service
