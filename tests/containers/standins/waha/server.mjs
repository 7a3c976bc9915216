// WAHA stand-in for the container tests: WAHA's HTTP face in small, and a NOWEB session written,
// churned and loaded by real Baileys 6 (noweb.mjs of tests/realclient, write-file-atomic as WAHA).
//
// Start: if {sessions}/default/{session}/creds.json exists, the session is loaded and every key
// used (`noweb.mjs verify`); otherwise a new one is generated there (`noweb.mjs generate`), with
// WAHA's .waha.session.config.json beside it. Then Baileys churns it (`noweb.mjs churn`) until
// SIGTERM or SIGINT, which ends the churn cleanly (pending writes finished) before exit 0.
//
// HTTP on WHATSAPP_API_HOSTNAME (127.0.0.1):WHATSAPP_API_PORT (3000):
//   GET /ping         200 {"message": "pong"}
//   GET /health       200 once the session is loaded or written, 503 before or on failure
//   GET /api/sessions [{name, status, engine}] as WAHA lists them
//   GET /api/standin  what happened: {status, uid, gid, folder, loaded, generate, verify, error}
// Settings: WAHA_STANDIN_SESSION (default), WAHA_STANDIN_CHURN (on|off), the sessions folder is
// /app/.sessions (WAHA_STANDIN_SESSIONS_DIR). Every line it logs is one JSON object.

import { spawn } from 'node:child_process'
import fsp from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'

const port = Number(process.env.WHATSAPP_API_PORT ?? 3000)
const host = process.env.WHATSAPP_API_HOSTNAME ?? '127.0.0.1'
const root = process.env.WAHA_STANDIN_SESSIONS_DIR ?? '/app/.sessions'
const name = process.env.WAHA_STANDIN_SESSION ?? 'default'
const churnOn = (process.env.WAHA_STANDIN_CHURN ?? 'on') !== 'off'
const folder = path.join(root, 'default', name)
const manifest = path.join(folder, '.waha.session.standin.json')
const script = new URL('./noweb.mjs', import.meta.url).pathname
const line = '6'
// Baileys uses the global `crypto` (WebCrypto), global by default only from Node 19 on; Debian
// bookworm's Node is 18.
const nodeFlags = Number(process.versions.node.split('.')[0]) < 19 ? ['--experimental-global-webcrypto'] : []

const state = {
  status: 'STARTING',
  uid: process.getuid(),
  gid: process.getgid(),
  folder,
  loaded: null,
  generate: null,
  verify: null,
  churn: null,
  error: null,
}
let churn = null

const log = (event, extra = {}) => console.log(JSON.stringify({ standin: event, ...extra }))

function noweb(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`noweb.mjs ${args[0]}: exit ${code}: ${err.slice(-2000)}`))
      else resolve(JSON.parse(out.trim().split('\n').pop()))
    })
  })
}

// WAHA writes its session config atomically: a temp file beside it, then a rename.
async function writeConfig() {
  const config = { name, engine: 'NOWEB', config: { noweb: { store: { enabled: true } } } }
  const tmp = `${path.join(folder, '.waha.session.config.json')}.${process.pid}`
  await fsp.writeFile(tmp, JSON.stringify(config))
  await fsp.rename(tmp, path.join(folder, '.waha.session.config.json'))
}

async function start() {
  const seed = String(1 + (Date.now() % 100000))
  const exists = await fsp.access(path.join(folder, 'creds.json')).then(
    () => true,
    () => false,
  )
  if (exists) {
    state.loaded = true
    state.verify = await noweb(['verify', '--line', line, '--folder', folder, '--manifest', manifest])
    if (state.verify.problems.length) throw new Error(`session does not load: ${state.verify.problems.slice(0, 5)}`)
  } else {
    state.loaded = false
    await fsp.mkdir(folder, { recursive: true })
    await writeConfig()
    state.generate = await noweb([
      'generate', '--line', line, '--writer', 'atomic', '--folder', folder,
      '--manifest', manifest, '--seed', seed, '--peers', '24', '--groups', '6',
    ])
  }
  state.status = 'WORKING'
  log('working', { loaded: state.loaded, files: (state.verify ?? state.generate).files })
  if (churnOn) {
    churn = spawn(
      process.execPath,
      [...nodeFlags, script, 'churn', '--line', line, '--writer', 'atomic', '--folder', folder, '--manifest', manifest, '--seed', seed],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    let out = ''
    churn.stdout.on('data', (d) => (out += d))
    churn.exited = new Promise((resolve) => churn.on('close', (code) => resolve({ code, out })))
  }
}

const server = http.createServer((req, res) => {
  const send = (code, body) => {
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const url = req.url.split('?')[0]
  if (url === '/ping') return send(200, { message: 'pong' })
  if (url === '/health') return send(state.status === 'WORKING' ? 200 : 503, { status: state.status })
  if (url === '/api/sessions') return send(200, [{ name, status: state.status, engine: { engine: 'NOWEB' } }])
  if (url === '/api/standin') return send(200, state)
  return send(404, { error: 'not found' })
})

let stopping = false
async function stop(signal) {
  if (stopping) return
  stopping = true
  log('stopping', { signal })
  server.close()
  if (churn) {
    churn.stdin.end() // churn finishes its pending writes, writes creds once more, reports
    const { code, out } = await churn.exited
    const report = code === 0 ? JSON.parse(out.trim().split('\n').pop()) : null
    log('churn stopped', { code, counts: report?.counts, files: report?.files?.length })
  }
  log('stopped')
  process.exit(0)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

server.listen(port, host, () => log('listening', { host, port, uid: state.uid }))
start().catch((err) => {
  state.status = 'FAILED'
  state.error = String(err?.message ?? err)
  log('failed', { error: state.error })
})
