#!/usr/bin/env node
'use strict';
// The compiled CLI (npm run build). Exit through exitCode so buffered stdout is flushed first.
const cli = require('../dist/cli/main.js');
cli.main(process.argv).then((status) => {
  process.exitCode = cli.finalStatus(status);
});
