'use strict'
// The results as a text table (printed) and as a hand-written SVG bar chart of the ratios.
//
// A row: { workload, name, unit, ours, oursNote?, baseline, base, error?, target? } where
// `ratio` = ours / base (below 1: ours took less time, or used less memory), and `target` is
// the goal an issue sets for the row: { ratioMax } or { oursMax } (in `unit`), with `issue`
// when it is not issue 4. Targets are reported, never asserted.

/** A value in its unit: thousands separators, fewer decimals as it grows. */
function formatValue(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-'
  const abs = Math.abs(value)
  if (abs >= 100) return Math.round(value).toLocaleString('en-US')
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 1) return value.toFixed(2)
  if (abs === 0) return '0'
  return value.toFixed(3)
}

function formatRatio(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return '-'
  if (ratio < 0.001) return '<0.001x'
  if (ratio < 0.1) return `${ratio.toFixed(3)}x`
  return `${ratio.toFixed(2)}x`
}

function ratioOf(row) {
  if (row.error || row.ours === null || row.base === null || row.base === undefined) return null
  if (!Number.isFinite(row.ours) || !Number.isFinite(row.base) || row.base <= 0) return null
  return row.ours / row.base
}

/** "≤1.50x: met" / "≤1.50x: not met, 1.21x over" / "<16 MiB: met" / "" */
function formatTarget(row) {
  const t = row.target
  if (!t) return ''
  const text = formatGoal(row, t)
  return t.issue ? `${text} (issue ${t.issue})` : text
}

function formatGoal(row, t) {
  if (t.ratioMax !== undefined) {
    const goal =
      t.ratioMax < 0.1
        ? `<=${t.ratioMax.toFixed(2)}x (${Math.round(1 / t.ratioMax)}x less)`
        : `<=${t.ratioMax.toFixed(2)}x`
    const ratio = ratioOf(row)
    if (ratio === null) return `${goal}: not measured`
    return ratio <= t.ratioMax
      ? `${goal}: met`
      : `${goal}: not met, ${(ratio / t.ratioMax).toFixed(2)}x over`
  }
  if (t.oursMax !== undefined) {
    const goal = `<${t.oursMax} ${row.unit}`
    if (row.ours === null || !Number.isFinite(row.ours)) return `${goal}: not measured`
    return row.ours < t.oursMax
      ? `${goal}: met`
      : `${goal}: not met, ${(row.ours / t.oursMax).toFixed(2)}x over`
  }
  return ''
}

/** The text table: one line per (measure, baseline); a measure's name and value print once. */
function formatTable(rows) {
  const header = [
    'measure',
    'unit',
    'ours',
    'baseline',
    'baseline value',
    'ours/baseline',
    'target (issue 4 unless named)',
  ]
  const lines = []
  let previous = null
  for (const row of rows) {
    const same = previous && previous.name === row.name && previous.ours === row.ours
    const ours =
      row.ours === null
        ? '-'
        : `${formatValue(row.ours)}${row.oursNote ? ` (${row.oursNote})` : ''}`
    lines.push({
      group: !previous || previous.workload !== row.workload ? row.workload : null,
      cells: [
        same ? '' : row.name,
        same ? '' : row.unit,
        same ? '' : ours,
        row.baseline,
        row.error ? null : formatValue(row.base),
        row.error ? null : formatRatio(ratioOf(row)),
        formatTarget(row),
      ],
      error: row.error,
    })
    previous = row
  }
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => (l.cells[i] === null ? 0 : l.cells[i].length))),
  )
  const right = new Set([2, 4, 5])
  const pad = (text, i) => (right.has(i) ? text.padStart(widths[i]) : text.padEnd(widths[i]))
  const out = [header.map(pad).join('  ').trimEnd(), widths.map((w) => '-'.repeat(w)).join('  ')]
  for (const line of lines) {
    if (line.group) out.push(line.group)
    if (line.error) {
      // The error takes the place of the value, the ratio and the target.
      out.push(`${line.cells.slice(0, 4).map(pad).join('  ')}  ${line.error}`)
    } else {
      out.push(line.cells.map(pad).join('  ').trimEnd())
    }
  }
  return out.join('\n')
}

function escapeXml(text) {
  return String(text).replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[c],
  )
}

/**
 * A horizontal bar per (measure, baseline) on a log scale around 1x, under a heading line per
 * measure: bars to the left of 1x are rows where ours took less than the baseline. A thin red
 * mark shows the target ratio. A baseline that could not run shows its reason instead of a bar.
 */
function formatSvg(results) {
  const lines = []
  let previous = null
  for (const row of results.rows) {
    if (!previous || previous.name !== row.name) {
      lines.push({ heading: `${row.workload.split('.')[0]}. ${row.name} (${row.unit})` })
    }
    lines.push({ row, ratio: ratioOf(row) })
    previous = row
  }
  const ratios = lines.filter((l) => l.row && l.ratio !== null).map((l) => l.ratio)
  const width = 1000
  const labelWidth = 400
  const barLeft = labelWidth + 16
  const barRight = width - 80
  const top = 80
  const lineHeight = 19
  const axisY = top + lines.length * lineHeight
  const height = axisY + 52
  const clamp = (r) => Math.max(r, 1e-3)
  const logs = ratios.map((r) => Math.log10(clamp(r)))
  const lo = Math.min(-1, Math.floor(Math.min(...logs, 0)))
  const hi = Math.max(1, Math.ceil(Math.max(...logs, 0)))
  const x = (ratio) =>
    barLeft + ((Math.log10(clamp(ratio)) - lo) / (hi - lo)) * (barRight - barLeft)
  const m = results.machine
  const out = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  )
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(
    `<text x="16" y="24" font-size="16" font-weight="bold">node-mmap ÷ baseline: medians of ${results.settings.reps} runs side by side (map cost: ${results.settings.mapReps}; log scale)</text>`,
  )
  out.push(
    `<text x="16" y="44" fill="#444">${escapeXml(`${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, ${results.date.slice(0, 10)}${results.settings.quick ? ', --quick' : ''}`)}</text>`,
  )
  out.push(
    `<text x="16" y="62" fill="#444">Left of 1x: node-mmap took less time (or memory) than that baseline; right of 1x: more. Red mark: the target (issue 4; load: issue 15).</text>`,
  )
  for (let p = lo; p <= hi; p++) {
    const gx = x(10 ** p).toFixed(1)
    const label = p < 0 ? `${(10 ** p).toFixed(-p)}x` : `${10 ** p}x`
    const zero = p === 0
    out.push(
      `<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${axisY}" stroke="${zero ? '#333' : '#ddd'}" stroke-width="${zero ? 1.5 : 1}"/>`,
    )
    out.push(`<text x="${gx}" y="${axisY + 16}" text-anchor="middle" fill="#444">${label}</text>`)
  }
  lines.forEach((line, i) => {
    const y = top + i * lineHeight
    if (line.heading) {
      out.push(`<text x="16" y="${y + 14}" font-weight="bold">${escapeXml(line.heading)}</text>`)
      return
    }
    const { row, ratio } = line
    out.push(
      `<text x="${labelWidth}" y="${y + 14}" text-anchor="end" fill="#333">${escapeXml(`vs ${row.baseline}`)}</text>`,
    )
    if (ratio === null) {
      const why = row.error || 'not measured'
      const text = why.length > 80 ? `${why.slice(0, 79)}…` : why
      out.push(
        `<rect x="${barLeft}" y="${y}" width="${(text.length * 6.3).toFixed(0)}" height="${lineHeight}" fill="#ffffff"/>`,
      )
      out.push(
        `<text x="${barLeft + 2}" y="${y + 14}" fill="#777" font-style="italic">${escapeXml(text)}</text>`,
      )
      return
    }
    const x1 = x(1)
    const xr = x(ratio)
    const left = Math.min(x1, xr)
    const w = Math.max(Math.abs(xr - x1), 1)
    const color = ratio <= 1 ? '#3b7dd8' : '#e08a2c'
    out.push(
      `<rect x="${left.toFixed(1)}" y="${y + 4}" width="${w.toFixed(1)}" height="${lineHeight - 7}" fill="${color}"/>`,
    )
    out.push(
      `<text x="${width - 12}" y="${y + 14}" text-anchor="end" fill="#222">${escapeXml(formatRatio(ratio))}</text>`,
    )
    if (row.target && row.target.ratioMax !== undefined) {
      const mx = x(row.target.ratioMax).toFixed(1)
      out.push(
        `<line x1="${mx}" y1="${y + 1}" x2="${mx}" y2="${y + lineHeight - 1}" stroke="#d22" stroke-width="2"/>`,
      )
    }
  })
  out.push(
    `<text x="16" y="${height - 12}" fill="#444">Reproduce: npm run bench (or npm run bench -- --quick). Values, baselines, notes and every run: bench/results.json.</text>`,
  )
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

module.exports = { formatTable, formatSvg, formatValue, formatRatio, ratioOf, formatTarget }
