#!/usr/bin/env node
// Shipped as plain JavaScript so npm links the `lockq` command at install time, before the
// TypeScript build (the root `prepare` script) has produced dist/.
await import('../dist/main.js');
