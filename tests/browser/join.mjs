#!/usr/bin/env node
// join.mjs -- joins a chamade call from headless Chromium through the gateway's
// browser join page, records the audio the page receives, and reports as JSON.
//
// Usage:
//   node join.mjs --url <join_url> --mic <wav> --out <dir>
//                 [--name Alice] [--seconds 8]
//                 [--leave-after S | --close-after S]
//                 [--screenshot <png>] [--wait-ended S]
//                 [--chat TEXT] [--timeout 60]
//
//   --url          the join link, http://host:port/join/<token>; autojoin=1 and
//                  name=<name> are added to its query
//   --mic          WAV file played by Chromium's fake microphone (starts at
//                  getUserMedia, played once)
//   --out          folder for received.wav (48 kHz mono s16le)
//   --name         display name (default Guest)
//   --seconds      how long to record once connected (default 8)
//   --leave-after  S seconds after the recording ends, click Leave (DELETE of the
//                  WHIP resource; the result carries its HTTP status)
//   --close-after  S seconds after the recording ends, close the tab, running its
//                  beforeunload/pagehide handlers (keepalive DELETE)
//   --screenshot   full-page PNG taken at the end of the recording
//   --wait-ended   afterwards, wait up to S seconds for the page to be out of
//                  the call (window.chamade.ended, or status "Call ended");
//                  not waiting for it is not a failure: see "ended"
//   --chat         once connected, send this chat message from the page
//   --markers      N: the microphone is silence with N bursts of 1 kHz (20 ms, one a
//                  second, the first 1 s after recording starts); their wall-clock
//                  times are reported as markers_epoch_ms (--mic is still required
//                  but not played)
//   --timeout      hard limit for the whole run in seconds (default 60)
//
// Chromium: $CHROMIUM or /usr/bin/chromium; never downloads a browser. Each run
// uses a fresh temporary profile, so several runs can go at once (use a
// different --out for each).
//
// Prints one JSON line on stdout. Success (exit 0):
//   {"ok":true,"connected_ms":..,"received_wav":"..","received_seconds":..,
//    "received_rms":..,"received_peak":..,"participants":[{"participant_id":..,
//    "name":..,"kind":..}],"chat":[{"sender":..,"text":..}],"transcript":[..],
//    "status":"..","state":"..","ended":bool,"closed":bool,"resource":"..",
//    "delete_status":int|null,"screenshot":".."|null,
//    "stats":{"packetsReceived":..,"packetsSent":..,"codec":"audio/opus",..},
//    "launch_ms":..,"total_ms":..,"console":[last 50 lines]}
// Failure (exit 1): {"ok":false,"error":"..","status":"..","console":[..]}
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const elapsed = () => Date.now() - t0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CONNECT_TIMEOUT_MS = 20000;
const SAMPLE_RATE = 48000;

const consoleLines = [];
const logLine = (line) => {
  consoleLines.push(line);
  if (consoleLines.length > 500) consoleLines.splice(0, consoleLines.length - 500);
};
let context = null;
let userDataDir = null;
let lastStatus = null;
let done = false;

// ------------------------------------------------------------------ options

const OPTIONS = {
  url: 'string', mic: 'string', out: 'string', name: 'string', seconds: 'number',
  'leave-after': 'number', 'close-after': 'number', screenshot: 'string',
  'wait-ended': 'number', chat: 'string', timeout: 'number', markers: 'number',
};

// With --markers, the page's microphone is a WebAudio oscillator instead of the fake
// device: silent, except for 20 ms bursts of 1 kHz that the harness schedules and whose
// wall-clock times (ms since the epoch) it reports, for mouth-to-ear latency. The time of a
// burst is when WebAudio renders it into the track, known to within a render quantum.
const MARKER_MIC = `(() => {
  const md = navigator.mediaDevices;
  md.getUserMedia = async () => {
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = 1000;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    window.__marker = { ctx, gain };
    return dest.stream;
  };
})();`;

function usage() {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  const end = text.findIndex((l) => l.startsWith('import '));
  return text.slice(1, end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
}

function parseArgs(argv) {
  const opts = { name: 'Guest', seconds: 8, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stderr.write(usage() + '\n');
      process.exit(0);
    }
    let key = a.startsWith('--') ? a.slice(2) : null;
    let value;
    if (key && key.includes('=')) { value = key.slice(key.indexOf('=') + 1); key = key.slice(0, key.indexOf('=')); }
    if (!key || !(key in OPTIONS)) throw new Error(`unknown argument: ${a}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`--${key} needs a value`);
      value = argv[++i];
    }
    if (OPTIONS[key] === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${key} must be a non-negative number, got ${value}`);
      opts[key] = n;
    } else {
      opts[key] = value;
    }
  }
  for (const k of ['url', 'mic', 'out']) if (!opts[k]) throw new Error(`--${k} is required`);
  if (opts['leave-after'] !== undefined && opts['close-after'] !== undefined) {
    throw new Error('--leave-after and --close-after exclude each other');
  }
  if (opts.timeout <= 0) throw new Error('--timeout must be positive');
  return opts;
}

// ------------------------------------------------------------------ output

function finish(result, code) {
  if (done) return;
  done = true;
  result.console = consoleLines.slice(-50);
  process.stdout.write(JSON.stringify(result) + '\n');
  if (userDataDir) {
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
  process.exit(code);
}

async function closeBrowser() {
  if (!context) return;
  const c = context;
  context = null;
  await Promise.race([c.close().catch(() => {}), sleep(3000)]);
}

async function fail(message) {
  await closeBrowser();
  finish({ ok: false, error: message, status: lastStatus }, 1);
}

function wav16(pcm, rate) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + pcm.length, 4);
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);        // PCM
  h.writeUInt16LE(1, 22);        // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(pcm.length, 40);
  return Buffer.concat([h, pcm]);
}

function levels(pcm) {
  const n = Math.floor(pcm.length / 2);
  let sum = 0;
  let peak = 0;
  for (let i = 0; i < n; i++) {
    const x = pcm.readInt16LE(i * 2) / 32768;
    sum += x * x;
    const a = Math.abs(x);
    if (a > peak) peak = a;
  }
  const round = (x) => Math.round(x * 1e5) / 1e5;
  return { rms: round(n ? Math.sqrt(sum / n) : 0), peak: round(peak) };
}

async function loadChromium() {
  try {
    const pw = await import('playwright-core');
    return pw.chromium || (pw.default && pw.default.chromium);
  } catch (e) {
    throw new Error(`playwright-core is not installed (run "npm install" in ${here}): ${e.message}`);
  }
}

// ------------------------------------------------------------------ in-page code

async function pageStatus(page) {
  try {
    return await page.evaluate(() => {
      const c = window.chamade;
      const el = document.getElementById('status');
      return {
        status: el ? el.textContent : null,
        state: c ? c.state : null,
        ended: c ? !!c.ended : null,
        error: c ? c.error : null,
        pc: c && c.pc ? `${c.pc.connectionState}/${c.pc.iceConnectionState}/${c.pc.signalingState}` : null,
      };
    });
  } catch (e) {
    return { status: lastStatus, state: null, ended: null, error: `page not readable: ${e.message}`, pc: null };
  }
}

// Starts recording window.chamade.remoteStream into window.__chamadeCapture.
async function startCapture(page, workletSource) {
  await page.evaluate(async ({ src, rate }) => {
    const c = window.chamade;
    if (!c.remoteStream) throw new Error('the page has no remote stream');
    const ac = new AudioContext({ sampleRate: rate });
    const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    try {
      await ac.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    const source = ac.createMediaStreamSource(c.remoteStream);
    const node = new AudioWorkletNode(ac, 'chamade-capture', {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: 'explicit',
    });
    const chunks = [];
    let onFlushed = null;
    node.port.onmessage = (e) => {
      if (e.data instanceof Float32Array) chunks.push(e.data);
      else if (e.data === 'flushed' && onFlushed) onFlushed();
    };
    const sink = ac.createGain();
    sink.gain.value = 0; // keeps the graph pulled, silently
    source.connect(node);
    node.connect(sink);
    sink.connect(ac.destination);
    await ac.resume();
    window.__chamadeCapture = {
      ac, source, node, chunks,
      flush: () => new Promise((res) => {
        onFlushed = res;
        node.port.postMessage('flush');
        setTimeout(res, 2000);
      }),
    };
  }, { src: workletSource, rate: SAMPLE_RATE });
}

// Stops the recording; returns {b64 (s16le), samples, sampleRate}.
async function stopCapture(page) {
  return page.evaluate(async () => {
    const cap = window.__chamadeCapture;
    await cap.flush();
    try { cap.source.disconnect(); } catch { /* already gone */ }
    const sampleRate = cap.ac.sampleRate;
    await cap.ac.close();
    let total = 0;
    for (const ch of cap.chunks) total += ch.length;
    const bytes = new Uint8Array(total * 2);
    const view = new DataView(bytes.buffer);
    let o = 0;
    for (const ch of cap.chunks) {
      for (let i = 0; i < ch.length; i++) {
        const x = Math.max(-1, Math.min(1, ch[i]));
        view.setInt16(o, x < 0 ? x * 0x8000 : x * 0x7fff, true);
        o += 2;
      }
    }
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    delete window.__chamadeCapture;
    return { b64: btoa(s), samples: total, sampleRate };
  });
}

async function rtcStats(page) {
  return page.evaluate(async () => {
    const pc = window.chamade && window.chamade.pc;
    if (!pc || pc.signalingState === 'closed') return null;
    const all = await pc.getStats();
    const out = {};
    let inCodec = null;
    let outCodec = null;
    let pairId = null;
    all.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        Object.assign(out, {
          packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived,
          packetsLost: s.packetsLost, jitter: s.jitter,
          totalSamplesReceived: s.totalSamplesReceived, concealedSamples: s.concealedSamples,
        });
        inCodec = s.codecId;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        Object.assign(out, { packetsSent: s.packetsSent, bytesSent: s.bytesSent });
        outCodec = s.codecId;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const codec = all.get(inCodec || outCodec);
    if (codec) {
      out.codec = codec.mimeType;
      out.clockRate = codec.clockRate;
      out.payloadType = codec.payloadType;
    }
    const pair = pairId && all.get(pairId);
    if (pair) {
      const l = all.get(pair.localCandidateId);
      const r = all.get(pair.remoteCandidateId);
      out.selectedPair = {
        local: l ? `${l.address}:${l.port}/${l.protocol}/${l.candidateType}` : null,
        remote: r ? `${r.address}:${r.port}/${r.protocol}/${r.candidateType}` : null,
        rtt: pair.currentRoundTripTime,
      };
    }
    return out;
  });
}

async function callView(page) {
  return page.evaluate(() => {
    const c = window.chamade;
    const list = c.participants instanceof Map ? [...c.participants.values()] : (c.participants || []);
    return {
      participants: list.map((p) => ({ participant_id: p.participant_id ?? null, name: p.name, kind: p.kind })),
      chat: (c.chat || []).map((m) => ({ sender: m.sender, text: m.text })),
      transcript: [...(c.transcript || [])],
      resource: c.resource,
    };
  });
}

// ------------------------------------------------------------------ main

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n\n${usage()}\n`);
    finish({ ok: false, error: e.message }, 1);
    return;
  }

  setTimeout(() => {
    fail(`timed out after ${opts.timeout} s (status: ${JSON.stringify(lastStatus)})`);
  }, opts.timeout * 1000).unref();

  const mic = resolve(opts.mic);
  if (!existsSync(mic)) return fail(`microphone file not found: ${mic}`);
  const out = resolve(opts.out);
  mkdirSync(out, { recursive: true });
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) return fail(`Chromium not found at ${executablePath} (set $CHROMIUM)`);
  const workletSource = readFileSync(join(here, 'capture-worklet.js'), 'utf8');
  let target;
  try {
    target = new URL(opts.url);
  } catch {
    return fail(`not a URL: ${opts.url}`);
  }
  target.searchParams.set('autojoin', '1');
  target.searchParams.set('name', opts.name);

  const chromium = await loadChromium();
  userDataDir = mkdtempSync(join(tmpdir(), 'chamade-join-'));
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${mic}%noloop`,
    '--autoplay-policy=no-user-gesture-required',
    '--allow-loopback-in-peer-connection',
  ];
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args,
    bypassCSP: true, // the capture worklet is loaded from a blob: URL
    viewport: { width: 900, height: 800 },
    timeout: 30000,
  });
  const launchMs = elapsed();
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => logLine(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logLine(`[pageerror] ${e.message}`));
  page.on('requestfailed', (r) => logLine(`[requestfailed] ${r.method()} ${r.url()} ${r.failure() ? r.failure().errorText : ''}`));
  page.on('response', (r) => { if (r.status() >= 400) logLine(`[http ${r.status()}] ${r.request().method()} ${r.url()}`); });
  page.on('dialog', (d) => { d.accept().catch(() => {}); });

  if (opts.markers) await page.addInitScript(MARKER_MIC);

  const tGoto = Date.now();
  let resp;
  try {
    resp = await page.goto(target.href, { waitUntil: 'domcontentloaded', timeout: 15000 });
  } catch (e) {
    return fail(`could not load ${target.href}: ${e.message}`);
  }
  if (resp && resp.status() >= 400) {
    let body = '';
    try { body = (await resp.text()).slice(0, 300); } catch { /* none */ }
    return fail(`join page answered HTTP ${resp.status()}: ${body}`);
  }

  // --- wait for the media connection
  let outcome = null;
  try {
    const handle = await page.waitForFunction(() => {
      const c = window.chamade;
      if (!c) return false;
      if (c.pc && c.pc.connectionState === 'connected') return 'connected';
      if (c.state === 'error' || c.ended) return 'failed';
      return false;
    }, null, { timeout: CONNECT_TIMEOUT_MS, polling: 100 });
    outcome = await handle.jsonValue();
  } catch (e) {
    outcome = /Timeout/i.test(e.message) ? 'timeout' : `error: ${e.message}`;
  }
  let st = await pageStatus(page);
  lastStatus = st.status;
  if (outcome !== 'connected') {
    const why = outcome === 'timeout' ? `not connected after ${CONNECT_TIMEOUT_MS / 1000} s` : 'could not join';
    return fail(`${why}: status "${st.status}" (state ${st.state}, pc ${st.pc}${st.error ? `, error ${st.error}` : ''})`);
  }
  const connectedMs = Date.now() - tGoto;

  // --- optional chat message from the page
  if (opts.chat) {
    try {
      await page.waitForFunction(() => window.chamade.ws && window.chamade.ws.readyState === 1, null, { timeout: 5000, polling: 100 });
      await page.fill('#chat-input', opts.chat);
      await page.click('#chat-send', { timeout: 5000 });
    } catch (e) {
      return fail(`could not send the chat message: ${e.message}`);
    }
  }

  // --- record what the page receives
  try {
    await startCapture(page, workletSource);
  } catch (e) {
    return fail(`could not start recording: ${e.message}`);
  }
  let markers = null;
  if (opts.markers) {
    try {
      markers = await page.evaluate((n) => {
        const { ctx, gain } = window.__marker;
        const t0 = ctx.currentTime + 1.0;
        const wall0 = performance.timeOrigin + performance.now() + 1000;
        const times = [];
        for (let k = 0; k < n; k++) {
          const t = t0 + k;
          gain.gain.setValueAtTime(0.5, t);
          gain.gain.setValueAtTime(0, t + 0.02);
          times.push(wall0 + k * 1000);
        }
        return times;
      }, opts.markers);
    } catch (e) {
      return fail(`could not schedule markers: ${e.message}`);
    }
  }
  await sleep(opts.seconds * 1000);
  let screenshot = null;
  if (opts.screenshot) {
    screenshot = resolve(opts.screenshot);
    mkdirSync(dirname(screenshot), { recursive: true });
    try {
      await page.screenshot({ path: screenshot, fullPage: true, timeout: 10000 });
    } catch (e) {
      logLine(`[harness] screenshot failed: ${e.message}`);
      screenshot = null;
    }
  }
  let rec;
  try {
    rec = await stopCapture(page);
  } catch (e) {
    return fail(`could not stop recording: ${e.message}`);
  }
  const pcm = Buffer.from(rec.b64, 'base64');
  const receivedWav = join(out, 'received.wav');
  writeFileSync(receivedWav, wav16(pcm, rec.sampleRate));
  const lv = levels(pcm);

  let stats = null;
  try { stats = await rtcStats(page); } catch (e) { logLine(`[harness] getStats failed: ${e.message}`); }
  const view = await callView(page);
  st = await pageStatus(page);
  lastStatus = st.status;

  // --- leave / close
  let closed = false;
  let deleteStatus = null;
  if (opts['leave-after'] !== undefined) {
    await sleep(opts['leave-after'] * 1000);
    try {
      await page.click('#leave', { timeout: 5000 });
      const h = await page.waitForFunction(
        () => !window.chamade.resource || window.chamade.deleteStatus !== null,
        null, { timeout: 5000, polling: 50 },
      );
      await h.dispose();
      deleteStatus = await page.evaluate(() => window.chamade.deleteStatus);
    } catch (e) {
      logLine(`[harness] leave: ${e.message}`);
    }
  } else if (opts['close-after'] !== undefined) {
    await sleep(opts['close-after'] * 1000);
    const gone = new Promise((r) => page.once('close', r));
    try {
      await page.close({ runBeforeUnload: true });
      await Promise.race([gone, sleep(5000)]);
    } catch (e) {
      logLine(`[harness] close: ${e.message}`);
    }
    closed = true;
    await sleep(1000); // let the keepalive DELETE leave the browser
  }

  // --- wait for the end of the call
  if (!closed && opts['wait-ended'] !== undefined) {
    try {
      const h = await page.waitForFunction(() => {
        const el = document.getElementById('status');
        return (window.chamade && window.chamade.ended) || (el && el.textContent === 'Call ended');
      }, null, { timeout: Math.max(1, opts['wait-ended'] * 1000), polling: 100 });
      await h.dispose();
    } catch (e) {
      if (!/Timeout/i.test(e.message)) logLine(`[harness] wait-ended: ${e.message}`);
    }
  }
  if (!closed) {
    st = await pageStatus(page);
    lastStatus = st.status;
  }

  const result = {
    ok: true,
    connected_ms: connectedMs,
    markers_epoch_ms: markers,
    received_wav: receivedWav,
    received_seconds: Math.round((rec.samples / rec.sampleRate) * 1000) / 1000,
    received_rms: lv.rms,
    received_peak: lv.peak,
    participants: view.participants,
    chat: view.chat,
    transcript: view.transcript,
    status: st.status,
    state: st.state,
    ended: !!st.ended,
    closed,
    resource: view.resource,
    delete_status: deleteStatus,
    screenshot,
    stats,
    launch_ms: launchMs,
    total_ms: elapsed(),
  };
  await closeBrowser();
  result.total_ms = elapsed();
  finish(result, 0);
}

main().catch((e) => fail(`harness error: ${(e && e.stack) || e}`));
