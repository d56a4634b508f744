'use strict'
// Prints bench/results.json (or the file given) as the Markdown table README's Performance
// section shows: `node bench/markdown.js [results.json]`.

const path = require('node:path')
const { formatValue, formatRatio, ratioOf, formatTarget } = require('./lib/report')

const results = require(path.resolve(process.argv[2] || path.join(__dirname, 'results.json')))
const cell = (text) => String(text).replace(/\|/g, '\\|')
const lines = [
  `Measured ${results.date.slice(0, 10)} on ${results.machine.cpu ?? results.machine.model ?? 'this machine'}, ` +
    `Node ${results.machine.node ?? process.version}: \`${results.command}\``,
  '',
  '| workload | measure | unit | node-mmap | baseline | baseline value | ratio | issue 4 target |',
  '| --- | --- | --- | ---: | --- | ---: | ---: | --- |',
]
for (const row of results.rows) {
  const ours = formatValue(row.ours) + (row.oursNote ? ` (${row.oursNote})` : '')
  const base = row.error ? row.error : formatValue(row.base)
  lines.push(
    `| ${cell(row.workload)} | ${cell(row.name)} | ${row.unit} | ${cell(ours)} | ${cell(row.baseline)} | ` +
      `${cell(base)} | ${formatRatio(ratioOf(row))} | ${cell(formatTarget(row))} |`,
  )
}
console.log(lines.join('\n'))
