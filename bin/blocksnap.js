#!/usr/bin/env node
'use strict';
// The compiled CLI (npm run build). Exit through exitCode so buffered stdout is flushed first.
require('../dist/cli/main.js')
  .main(process.argv)
  .then((status) => {
    process.exitCode = status;
  });
