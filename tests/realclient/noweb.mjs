// NOWEB sessions written, churned and checked by Baileys itself (the code WAHA's NOWEB engine runs).
//
//   node noweb.mjs generate --line 6|7 --writer plain|atomic --folder DIR --manifest FILE [--seed N]
//   node noweb.mjs churn    --line 6|7 --writer plain|atomic --folder DIR --manifest FILE [--seed N]
//   node noweb.mjs verify   --line 6|7 --folder DIR --manifest FILE
//   node noweb.mjs leftover --file FILE
//
// Every command prints one JSON object on stdout. `--line 6` is @whiskeysockets/baileys 6.17.16,
// `--line 7` is baileys 7.0.0-rc. `--writer plain` keeps Baileys' own non-atomic writeFile;
// `--writer atomic` routes the same useMultiFileAuthState through write-file-atomic (temp file,
// fsync, rename), as WAHA does. `churn` runs until its stdin closes, then waits for every pending
// write and reports the last creds.json it wrote and the files in the folder. `leftover` starts a
// write-file-atomic write and dies by SIGKILL once the temp file exists (what a crash leaves).

import { createHash, randomBytes } from 'node:crypto'
import fsp from 'node:fs/promises'
import { createRequire, syncBuiltinESMExports } from 'node:module'

const require = createRequire(import.meta.url)

function parseArgs(argv) {
  const out = { _: argv[0] }
  for (let i = 1; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1]
  return out
}

const args = parseArgs(process.argv.slice(2))

// A small deterministic generator (mulberry32) so a seed names one session.
function rngFrom(seed) {
  let a = Number(seed) >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const silent = {
  level: 'silent',
  child() {
    return silent
  },
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {},
}

function useAtomicWriter() {
  // WAHA's writer: the same Baileys store, each file written via write-file-atomic.
  const writeFileAtomic = require('write-file-atomic')
  fsp.writeFile = (path, data, options) => writeFileAtomic(path, data, options)
  syncBuiltinESMExports() // ESM `import { writeFile } from 'fs/promises'` sees it too
}

// Baileys' index leaves makeLibSignalRepository out; the socket imports it from lib/Signal.
async function loadBaileys(line) {
  if (line === '6') {
    const B = require('@whiskeysockets/baileys')
    const { makeLibSignalRepository } = require('@whiskeysockets/baileys/lib/Signal/libsignal')
    return { ...B, makeLibSignalRepository }
  }
  if (line === '7') {
    const B = await import('baileys')
    const { makeLibSignalRepository } = await import('baileys/lib/Signal/libsignal.js')
    return { ...B, makeLibSignalRepository }
  }
  throw new Error(`--line: 6 or 7 (got ${line})`)
}

function withTransactions(B, keys) {
  return B.addTransactionCapability(keys, silent, { maxCommitRetries: 3, delayBetweenTriesMs: 5 })
}

function repoFor(B, line, creds, keys) {
  const auth = { creds, keys }
  return line === '7' ? B.makeLibSignalRepository(auth, silent) : B.makeLibSignalRepository(auth)
}

// A peer (another phone) with its keys in memory.
function makePeer(B, line, jid) {
  const creds = B.initAuthCreds()
  const store = {}
  const raw = {
    get: async (type, ids) => Object.fromEntries(ids.map((id) => [id, store[type]?.[id]])),
    set: async (data) => {
      for (const type in data) {
        store[type] ??= {}
        for (const id in data[type]) {
          if (data[type][id] == null) delete store[type][id]
          else store[type][id] = data[type][id]
        }
      }
    },
  }
  const keys = withTransactions(B, raw)
  return { jid, creds, keys, repo: repoFor(B, line, creds, keys) }
}

const enc = (s) => Buffer.from(s, "utf8")
const dec = (b) => new TextDecoder().decode(b)
const b64 = (b) => Buffer.from(b).toString('base64')

// Opens the session folder the way WAHA's NOWEB engine does.
async function openSession(B, line, folder) {
  const { state, saveCreds } = await B.useMultiFileAuthState(folder)
  const keys = withTransactions(B, state.keys)
  const auth = { creds: state.creds, keys }
  return { creds: state.creds, keys, saveCreds, repo: repoFor(B, line, state.creds, keys), auth }
}

function peerJid(line, rand, n) {
  const user = String(4915100000000 + Math.floor(rand() * 1e8) * 10 + (n % 10))
  const device = n % 3 === 0 ? 0 : 1 + (n % 20)
  // Baileys 7 talks to LID addresses; some peers are known only by LID.
  if (line === '7' && n % 2 === 1) return `${100000000000000 + n * 7919}${device ? `:${device}` : ''}@lid`
  return `${user}${device ? `:${device}` : ''}@s.whatsapp.net`
}

// A new contact writes first: its pkmsg consumes (deletes) one of our pre-keys.
async function incomingSession(B, me, peer, preKeyId) {
  const { [preKeyId]: preKey } = await me.keys.get('pre-key', [String(preKeyId)])
  if (!preKey) return false
  await peer.repo.injectE2ESession({
    jid: me.creds.me.id,
    session: {
      registrationId: me.creds.registrationId,
      identityKey: B.generateSignalPubKey(me.creds.signedIdentityKey.public),
      signedPreKey: {
        keyId: me.creds.signedPreKey.keyId,
        publicKey: B.generateSignalPubKey(me.creds.signedPreKey.keyPair.public),
        signature: me.creds.signedPreKey.signature,
      },
      preKey: { keyId: preKeyId, publicKey: B.generateSignalPubKey(preKey.public) },
    },
  })
  const text = `hello from ${peer.jid}`
  const { type, ciphertext } = await peer.repo.encryptMessage({ jid: me.creds.me.id, data: enc(text) })
  const plain = await me.repo.decryptMessage({ jid: peer.jid, type, ciphertext })
  if (dec(plain) !== text) throw new Error('pkmsg decrypted to something else')
  return true
}

// One message each way on an established session: both session records are rewritten.
async function exchange(me, peer, n) {
  const out = await me.repo.encryptMessage({ jid: peer.jid, data: enc(`ping ${n}`) })
  await peer.repo.decryptMessage({ jid: me.creds.me.id, type: out.type, ciphertext: out.ciphertext })
  const back = await peer.repo.encryptMessage({ jid: me.creds.me.id, data: enc(`pong ${n}`) })
  const plain = await me.repo.decryptMessage({ jid: peer.jid, type: back.type, ciphertext: back.ciphertext })
  if (dec(plain) !== `pong ${n}`) throw new Error('reply decrypted to something else')
}

const APP_STATE = ['critical_block', 'critical_unblock_low', 'regular_high', 'regular', 'regular_low']

async function appStatePatch(B, me, name, keyId, n) {
  const { [name]: current } = await me.keys.get('app-state-sync-version', [name])
  const state = current ?? B.newLTHashState()
  const getKey = async (id) => (await me.keys.get('app-state-sync-key', [id]))[id]
  const jid = `4917${String(n).padStart(9, '0')}@s.whatsapp.net`
  const { state: next } = await B.encodeSyncdPatch(
    {
      type: name,
      index: ['mute', jid],
      syncAction: { timestamp: Date.now(), muteAction: { muted: n % 2 === 0, muteEndTimestamp: n } },
      apiVersion: 2,
      operation: B.proto.SyncdMutation.SyncdOperation.SET,
    },
    keyId,
    state,
    getKey,
  )
  await me.keys.set({ 'app-state-sync-version': { [name]: next } })
  return next.version
}

function credsText(B, creds) {
  return JSON.stringify(creds, B.BufferJSON.replacer)
}

async function listFolder(folder) {
  return (await fsp.readdir(folder)).sort()
}

async function generate() {
  const line = args.line
  if (args.writer === 'atomic') useAtomicWriter()
  const B = await loadBaileys(line)
  const rand = rngFrom(args.seed ?? 1)
  const started = Date.now()
  const me = await openSession(B, line, args.folder)
  const user = String(4930000000000 + Math.floor(rand() * 1e9))
  const device = 10 + Math.floor(rand() * 20)
  me.creds.me = { id: `${user}:${device}@s.whatsapp.net`, name: 'waha-sync test' }
  if (line === '7') me.creds.me.lid = `${200000000000000 + Math.floor(rand() * 1e9)}:${device}@lid`
  me.creds.registered = true
  me.creds.platform = 'android'
  // 812 pre-keys, as Baileys 7 uploads on first connect (Baileys 6 starts with fewer and
  // tops up over time; a long-lived WAHA session holds hundreds either way).
  const { update } = await B.getNextPreKeys({ creds: me.creds, keys: me.keys }, 812)
  Object.assign(me.creds, update)
  let firstPreKey = 1
  await me.saveCreds()
  const peers = []
  const nPeers = Number(args.peers ?? 24)
  for (let n = 0; n < nPeers; n++) {
    const peer = makePeer(B, line, peerJid(line, rand, n))
    if (await incomingSession(B, me, peer, firstPreKey++)) peers.push(peer)
    if (n % 4 === 0) await exchange(me, peer, n)
  }
  // Groups: our own sender key in each, and received sender keys of three members.
  const pending = []
  const groups = Number(args.groups ?? 6)
  for (let g = 0; g < groups; g++) {
    const group = `1203630${String(Math.floor(rand() * 1e11)).padStart(11, '0')}@g.us`
    await me.repo.encryptGroupMessage({ group, meId: me.creds.me.id, data: enc(`to ${group}`) })
    const members = {}
    for (let m = 0; m < 3; m++) {
      const peer = peers[(g * 3 + m) % peers.length]
      members[peer.jid] = true
      const first = await peer.repo.encryptGroupMessage({ group, meId: peer.jid, data: enc('first') })
      await me.repo.processSenderKeyDistributionMessage({
        item: { groupId: group, axolotlSenderKeyDistributionMessage: first.senderKeyDistributionMessage },
        authorJid: peer.jid,
      })
      const got = await me.repo.decryptGroupMessage({ group, authorJid: peer.jid, msg: first.ciphertext })
      if (dec(got) !== 'first') throw new Error('group message decrypted to something else')
      // A message still on its way: verify decrypts it with the stored (or restored) key.
      const later = await peer.repo.encryptGroupMessage({ group, meId: peer.jid, data: enc(`later ${g}.${m}`) })
      pending.push({ group, author: peer.jid, ciphertext: b64(later.ciphertext), text: `later ${g}.${m}` })
    }
    await me.keys.set({ 'sender-key-memory': { [group]: members } })
  }
  // App state: sync keys, and versions built from real patches.
  const keyIds = []
  for (let k = 0; k < 3; k++) {
    const keyId = b64(randomBytes(6))
    keyIds.push(keyId)
    const keyData = B.proto.Message.AppStateSyncKeyData.fromObject({
      keyData: randomBytes(32),
      fingerprint: { rawId: k + 1, currentIndex: k, deviceIndexes: [0, device] },
      timestamp: Math.floor(Date.now() / 1000),
    })
    await me.keys.set({ 'app-state-sync-key': { [keyId]: keyData } })
  }
  for (const name of APP_STATE) for (let n = 0; n < 4; n++) await appStatePatch(B, me, name, keyIds[0], n)
  if (line === '7') {
    const lidPeers = peers.filter((p) => p.jid.endsWith('@lid')).slice(0, 10)
    await me.repo.lidMapping.storeLIDPNMappings(
      lidPeers.map((p, i) => ({
        lid: p.jid.replace(/:\d+@/, '@'),
        pn: `${4915900000000 + i}@s.whatsapp.net`,
      })),
    )
    const devices = {}
    const tokens = {}
    for (const p of peers.slice(0, 20)) {
      const u = p.jid.split(/[:@]/)[0]
      devices[u] = ['0', String(1 + (Number(u.slice(-2)) % 5))]
      tokens[p.jid.replace(/:\d+@/, '@')] = { token: randomBytes(24), timestamp: String(Math.floor(Date.now() / 1000)) }
    }
    await me.keys.set({ 'device-list': devices, tctoken: tokens })
  }
  await me.saveCreds()
  const files = await listFolder(args.folder)
  await fsp.writeFile(
    args.manifest,
    JSON.stringify({ line, me: me.creds.me.id, keyId: keyIds[0], pending, ownGroups: groups }),
  )
  const byType = {}
  for (const f of files) {
    const t = f === 'creds.json' ? 'creds' : typeOf(f)
    byType[t] = (byType[t] ?? 0) + 1
  }
  console.log(JSON.stringify({ files: files.length, byType, peers: peers.length, ms: Date.now() - started }))
}

const TYPES = [
  'app-state-sync-version',
  'app-state-sync-key',
  'sender-key-memory',
  'sender-key',
  'pre-key',
  'session',
  'lid-mapping',
  'device-list',
  'identity-key',
  'tctoken',
]

function typeOf(file) {
  return TYPES.find((t) => file.startsWith(`${t}-`)) ?? 'other'
}

// The key id a file name stands for (useMultiFileAuthState writes '/' as '__' and ':' as '-').
function idOf(file, type) {
  return file
    .slice(type.length + 1, -'.json'.length)
    .replace(/__/g, '/')
    .replace(/-/g, ':')
}

async function churn() {
  const line = args.line
  if (args.writer === 'atomic') useAtomicWriter()
  const B = await loadBaileys(line)
  const rand = rngFrom(args.seed ?? 2)
  const me = await openSession(B, line, args.folder)
  const manifest = JSON.parse(await fsp.readFile(args.manifest, 'utf8'))
  let stopping = false
  process.stdin.on('end', () => {
    stopping = true
  })
  process.stdin.resume()
  const counts = { saveCreds: 0, sessionsCreated: 0, exchanges: 0, preKeysUploaded: 0, keysDeleted: 0, appStatePatches: 0, bursts: 0 }
  let lastCreds = ''
  const peers = []
  let n = 1000
  const preKeyIds = async () => {
    const ids = (await listFolder(args.folder)).filter((f) => f.startsWith('pre-key-'))
    return ids.map((f) => Number(f.slice('pre-key-'.length, -'.json'.length))).sort((a, b) => a - b)
  }
  let available = await preKeyIds()
  console.error('churn: started')
  while (!stopping) {
    const roll = rand()
    if (roll < 0.3) {
      // saveCreds in a tight loop, as Baileys does on every creds.update event.
      for (let i = 0; i < 20; i++) {
        me.creds.accountSyncCounter = (me.creds.accountSyncCounter ?? 0) + 1
        me.creds.lastAccountSyncTimestamp = Date.now()
        me.creds.processedHistoryMessages = [
          ...(me.creds.processedHistoryMessages ?? []).slice(-30),
          { key: { remoteJid: me.creds.me.id, id: randomBytes(8).toString('hex') }, messageTimestamp: Date.now() },
        ]
        lastCreds = credsText(B, me.creds)
        await me.saveCreds()
        counts.saveCreds++
      }
    } else if (roll < 0.5) {
      const peer = makePeer(B, line, peerJid(line, rand, n++))
      const id = available.shift()
      if (id !== undefined && (await incomingSession(B, me, peer, id))) {
        peers.push(peer)
        counts.sessionsCreated++
      }
    } else if (roll < 0.75 && peers.length) {
      await exchange(me, peers[Math.floor(rand() * peers.length)], n++)
      counts.exchanges++
    } else if (roll < 0.85) {
      await appStatePatch(B, me, APP_STATE[Math.floor(rand() * APP_STATE.length)], manifest.keyId, n++)
      counts.appStatePatches++
    } else {
      // keys.set bursts: new pre-keys when they run low, sender-key memories set and deleted,
      // and sessions of peers that went away deleted, all in one set() call.
      const burst = { 'sender-key-memory': {} }
      if (available.length < 780) {
        const { update } = await B.getNextPreKeys({ creds: me.creds, keys: me.keys }, 50)
        Object.assign(me.creds, update)
        lastCreds = credsText(B, me.creds)
        await me.saveCreds()
        counts.saveCreds++
        counts.preKeysUploaded += 50
        available = await preKeyIds()
      }
      for (let i = 0; i < 10; i++) burst['sender-key-memory'][`1203639${n++}@g.us`] = { [me.creds.me.id]: true }
      const memories = (await listFolder(args.folder)).filter((f) => f.startsWith('sender-key-memory-1203639'))
      for (const f of memories.slice(0, 5)) {
        burst['sender-key-memory'][idOf(f, 'sender-key-memory')] = null
        counts.keysDeleted++
      }
      if (peers.length > 5 && rand() < 0.5) {
        const gone = peers.shift()
        const decoded = B.jidDecode(gone.jid)
        const user = decoded.server === 'lid' ? `${decoded.user}_1` : decoded.user
        burst.session = { [`${user}.${decoded.device ?? 0}`]: null }
        counts.keysDeleted++
      }
      await me.keys.set(burst)
      counts.bursts++
    }
    await new Promise((r) => setImmediate(r))
  }
  // Last words: a final creds write, like a stopping socket, then report.
  me.creds.lastAccountSyncTimestamp = Date.now()
  lastCreds = credsText(B, me.creds)
  await me.saveCreds()
  counts.saveCreds++
  const files = await listFolder(args.folder)
  console.log(
    JSON.stringify({
      counts,
      lastCredsSha256: createHash('sha256').update(lastCreds).digest('hex'),
      lastCredsBytes: Buffer.byteLength(lastCreds),
      files,
    }),
  )
  process.exit(0)
}

async function verify() {
  const line = args.line
  const B = await loadBaileys(line)
  const manifest = JSON.parse(await fsp.readFile(args.manifest, 'utf8'))
  const me = await openSession(B, line, args.folder)
  const problems = []
  if (me.creds.me?.id !== manifest.me) problems.push(`creds.me is ${me.creds.me?.id}, wanted ${manifest.me}`)
  if (!me.creds.registered) problems.push('creds.registered is not set')
  const files = await listFolder(args.folder)
  const byType = {}
  // WAHA keeps its own .waha.session.* files in the folder; everything else is Baileys'.
  const keyFiles = files.filter((f) => f !== 'creds.json' && !f.startsWith('.waha.session.'))
  for (const f of keyFiles) {
    const type = typeOf(f)
    if (type === 'other') {
      problems.push(`not a Baileys key file: ${f}`)
      continue
    }
    const id = idOf(f, type)
    const { [id]: value } = await me.keys.get(type, [id])
    if (value == null) problems.push(`${type} ${id} (${f}) does not load`)
    byType[type] = (byType[type] ?? 0) + 1
  }
  const sessions = { total: 0, encrypted: 0, pkmsg: 0 }
  for (const f of keyFiles.filter((x) => typeOf(x) === 'session')) {
    sessions.total++
    const [user, device] = idOf(f, 'session').split('.')
    const jid = user.endsWith('_1')
      ? `${user.slice(0, -2)}${device !== '0' ? `:${device}` : ''}@lid`
      : `${user}${device !== '0' ? `:${device}` : ''}@s.whatsapp.net`
    try {
      const out = await me.repo.encryptMessage({ jid, data: enc('after restore') })
      sessions.encrypted++
      if (out.type === 'pkmsg') sessions.pkmsg++
    } catch (err) {
      problems.push(`session ${f} does not encrypt: ${err.message}`)
    }
  }
  const senderKeys = { total: 0, ownEncrypted: 0, receivedDecrypted: 0, receivedWithoutMessage: 0 }
  const myUser = B.jidDecode(me.creds.me.id).user
  for (const f of keyFiles.filter((x) => typeOf(x) === 'sender-key')) {
    senderKeys.total++
    const [group, author] = idOf(f, 'sender-key').split('::')
    try {
      if (author === myUser) {
        await me.repo.encryptGroupMessage({ group, meId: me.creds.me.id, data: enc('after restore') })
        senderKeys.ownEncrypted++
        continue
      }
      const waiting = manifest.pending.find(
        (p) => p.group === group && B.jidDecode(p.author).user === author.replace(/_1$/, ''),
      )
      if (!waiting) {
        senderKeys.receivedWithoutMessage++
        continue
      }
      const plain = await me.repo.decryptGroupMessage({
        group,
        authorJid: waiting.author,
        msg: Buffer.from(waiting.ciphertext, 'base64'),
      })
      if (dec(plain) !== waiting.text) throw new Error('decrypted to something else')
      senderKeys.receivedDecrypted++
    } catch (err) {
      problems.push(`sender key ${f} does not work: ${err.message}`)
    }
  }
  const appState = { versions: 0, patched: 0 }
  for (const f of keyFiles.filter((x) => typeOf(x) === 'app-state-sync-version')) {
    appState.versions++
    try {
      await appStatePatch(B, me, idOf(f, 'app-state-sync-version'), manifest.keyId, 99)
      appState.patched++
    } catch (err) {
      problems.push(`app state ${f} does not take a patch: ${err.message}`)
    }
  }
  console.log(JSON.stringify({ files: files.length, byType, sessions, senderKeys, appState, problems }))
}

async function leftover() {
  const writeFileAtomic = require('write-file-atomic')
  await writeFileAtomic(args.file, JSON.stringify({ never: 'renamed' }), {
    tmpfileCreated: (tmp) => {
      process.stdout.write(`${JSON.stringify({ tmp })}\n`, () => process.kill(process.pid, 'SIGKILL'))
      return new Promise(() => {}) // never goes on: the process dies first
    },
  })
}

const commands = { generate, churn, verify, leftover }
if (!commands[args._]) {
  console.error(`usage: node noweb.mjs ${Object.keys(commands).join('|')} ...`)
  process.exit(2)
}
commands[args._]().catch((err) => {
  console.error(err?.stack ?? String(err))
  process.exit(1)
})
