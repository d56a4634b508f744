// Deliberately wrong: __test__/types.test.js asserts that tsc reports exactly these errors.
import { map, openSync } from 'node-mmap'

map('4096', 3, 1, -1)
openSync('/tmp/x', { mode: 'w' })
