#!/bin/bash -e
# Runtime dependencies (onoff's epoll is built here, for the image's architecture).
cd /opt/snapback
npm ci --omit=dev --no-audit --no-fund
npm cache clean --force
systemctl enable snapback.service
