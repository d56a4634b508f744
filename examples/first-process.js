// The first process of the shared-memory example from the original node-mmap README, verbatim:
// it sizes /tmp/temp_file, maps it MAP_SHARED and writes 0xDEADBEEF at offset 0. Run it, then
// second-process.js (or both: `npm run example`).
const fs = require('fs');
const mmap = require('node-mmap');

var n_bytes = 1024;
var fd = fs.openSync('/tmp/temp_file', 'w+');
fs.writeSync(fd, '\0', n_bytes); // resize
var buffer = mmap.map(n_bytes, mmap.PROT_READ | mmap.PROT_WRITE , mmap.MAP_SHARED, fd, 0);
buffer.writeUInt32BE(0xDEADBEEF, 0);
