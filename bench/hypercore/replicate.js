// Hypercore's side of sublog's sync benchmark (issue 17): one process
// creates a core of N entries of B bytes, a second process replicates all
// of it over TCP on 127.0.0.1, and the run prints what it took as one JSON
// line. Not part of `make test`; `make bench-hypercore` runs it beside the Go
// benchmark (compare.sh).
//
//   node replicate.js [--entries N] [--size B]
//
// Timed: from the reader's TCP connect (so the Noise handshake is in) until
// the reader's core holds every entry, verified and stored. Filling the
// writer's core is not timed (as signing the cards is not, on sublog's
// side). Wire bytes are counted on the reader's socket, both directions.
'use strict'

const { spawn } = require('child_process')
const fs = require('fs')
const net = require('net')
const os = require('os')
const path = require('path')
const Hypercore = require('hypercore')

function args () {
  const a = { entries: 100000, size: 61, reader: false, key: '', port: 0 }
  const v = process.argv.slice(2)
  for (let i = 0; i < v.length; i++) {
    switch (v[i]) {
      case '--entries': a.entries = Number(v[++i]); break
      case '--size': a.size = Number(v[++i]); break
      case '--reader': a.reader = true; break
      case '--key': a.key = v[++i]; break
      case '--port': a.port = Number(v[++i]); break
      default: throw new Error('unknown argument ' + v[i])
    }
  }
  if (!(a.entries > 0) || !(a.size > 0)) throw new Error('--entries and --size must be positive')
  return a
}

function tmpdir (name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sublog-hc-' + name + '-'))
}

// entry i: B bytes, different for every i (no two blocks alike).
function entry (i, size) {
  const b = Buffer.alloc(size)
  for (let j = 0; j < size; j++) b[j] = (i * 31 + j * 7 + (i >>> 8)) & 0xff
  b.writeUInt32BE(i >>> 0, 0)
  return b
}

async function writer (a) {
  const dir = tmpdir('writer')
  const core = new Hypercore(dir)
  await core.ready()
  const batch = 1000
  for (let i = 0; i < a.entries; i += batch) {
    const blocks = []
    for (let j = i; j < Math.min(i + batch, a.entries); j++) blocks.push(entry(j, a.size))
    await core.append(blocks)
  }
  const server = net.createServer(socket => {
    const s = core.replicate(false)
    socket.pipe(s).pipe(socket)
    s.on('error', () => {})
    socket.on('error', () => {})
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const child = spawn(process.execPath, [__filename, '--reader', '--key', core.key.toString('hex'),
    '--port', String(server.address().port), '--entries', String(a.entries), '--size', String(a.size)],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', d => { out += d })
  const code = await new Promise(resolve => child.on('exit', resolve))
  server.close()
  await core.close()
  fs.rmSync(dir, { recursive: true, force: true })
  if (code !== 0) throw new Error('reader exited with ' + code)
  const r = JSON.parse(out)
  r.hypercore = require('hypercore/package.json').version
  r.node = process.version
  process.stdout.write(JSON.stringify(r) + '\n')
}

async function reader (a) {
  const dir = tmpdir('reader')
  const core = new Hypercore(dir, Buffer.from(a.key, 'hex'))
  await core.ready()
  const t0 = process.hrtime.bigint()
  const socket = net.connect(a.port, '127.0.0.1')
  const s = core.replicate(true)
  socket.pipe(s).pipe(socket)
  s.on('error', () => {})
  socket.on('error', () => {})
  await core.download({ start: 0, end: a.entries }).done()
  if (core.contiguousLength < a.entries) throw new Error('downloaded ' + core.contiguousLength + ' of ' + a.entries)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const wire = socket.bytesRead + socket.bytesWritten
  // Spot-check the content: first, middle and last entries as written.
  for (const i of [0, a.entries >> 1, a.entries - 1]) {
    const got = await core.get(i)
    if (!got.equals(entry(i, a.size))) throw new Error('entry ' + i + ' differs')
  }
  socket.destroy()
  await core.close()
  fs.rmSync(dir, { recursive: true, force: true })
  process.stdout.write(JSON.stringify({
    entries: a.entries,
    size: a.size,
    seconds,
    entries_per_s: a.entries / seconds,
    wire_bytes: wire,
    wire_per_block: wire / a.entries
  }) + '\n')
}

const a = args()
;(a.reader ? reader(a) : writer(a)).catch(err => {
  console.error(err)
  process.exit(1)
})
