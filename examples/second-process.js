// The second process of the shared-memory example from the original node-mmap README, verbatim:
// it maps /tmp/temp_file read-only and prints what first-process.js wrote there.
const fs = require('fs');
const mmap = require('node-mmap');

var fd = fs.openSync('/tmp/temp_file', 'r');
var size = fs.fstatSync(fd).size;
var buffer = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0);
console.log("I'll take dead beef? Answer: 0x" + buffer.readUInt32BE(0).toString(16));
