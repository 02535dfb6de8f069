// End-to-end test of sdk/js/switchboard.js in headless Chromium, against the
// real gateway and the real PHP live-comments example (lambda and page both
// served by `php -S`, as examples/live-comments/run.sh does).
//
//   SWITCHBOARD_BIN=target/debug/switchboard node sdk/js/test/e2e.mjs
//
// Phases:
//   1. two pages on one gateway: one posts, the other sees it (translated,
//      HTML-escaped), the viewer counter, the publish-path rate limit;
//   2. the gateway restarted mid-way on the embedded broker: a comment is
//      posted through a second gateway while the first is down; the pages
//      (WebSocket and SSE) reconnect with backoff, resume, get `gap`, and
//      refetch it;
//   3. the same on Redis (two gateways sharing a redis-server), where
//      history outlives the node: the page resumes and gets the comment with
//      no gap. Required by the cargo test (E2E_REQUIRE_REDIS=1); run by hand
//      against a build without the `redis` feature it is skipped with a note.
// Env: SWITCHBOARD_BIN (required), CHROMIUM (/usr/bin/chromium),
//      REDIS_SERVER (redis-server), E2E_REQUIRE_REDIS=1 to fail instead of skip.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const example = path.join(root, 'examples/live-comments');
const BIN = process.env.SWITCHBOARD_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const WAIT = 20000;
const TOTAL = 240000;

const children = new Set();
const tmpDirs = [];
let passed = 0;
let failed = 0;

function note(msg) {
  console.log(`# ${msg}`);
}

function ok(msg) {
  passed++;
  console.log(`ok   ${msg}`);
}

function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
}

const deadline = setTimeout(() => {
  console.log(`FAIL e2e did not finish within ${TOTAL / 1000} s`);
  cleanup();
  process.exit(1);
}, TOTAL);
deadline.unref();

function tmpDir(prefix) {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitPort(port, what) {
  const until = Date.now() + WAIT;
  while (Date.now() < until) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (up) return;
    await sleep(50);
  }
  throw new Error(`${what} not accepting on port ${port} within ${WAIT} ms`);
}

/** Spawns a child whose output goes to our stderr, prefixed; killed at exit. */
function run(name, cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const forward = (stream) => {
    let buf = '';
    stream.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        child.emit('line', line);
        if (process.env.E2E_VERBOSE || !/ (Accepted|Closing|started|speculative preconnection)$| \[\d{3}\]: [A-Z]+ \//.test(line)) process.stderr.write(`[${name}] ${line}\n`);
      }
    });
  };
  forward(child.stdout);
  forward(child.stderr);
  return child;
}

async function startPhp(name, args, env) {
  const port = await freePort();
  const child = run(name, 'php', ['-d', 'display_errors=stderr', '-S', `127.0.0.1:${port}`, ...args], env);
  await waitPort(port, name);
  return { child, port, url: `http://127.0.0.1:${port}` };
}

/** The page server's origin, once it runs: the gateways allow it (the page is on another port). */
let pageOrigin = '';

/** `switchboard serve` on a fixed port (so that a restart comes back where clients reconnect). */
async function startGateway(name, port, lambdaUrl, broker = 'memory') {
  const origins = pageOrigin ? ['--allowed-origins', pageOrigin] : [];
  const child = run(name, BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--broker', broker, '--app', `live_comments=${lambdaUrl}`, ...origins], {
    SWITCHBOARD_LOG: process.env.SWITCHBOARD_LOG || 'warn',
  });
  const ready = new Promise((resolve, reject) => {
    child.on('line', (line) => {
      if (line.startsWith('switchboard listening on http://')) resolve();
    });
    child.exited.then(({ code }) => reject(new Error(`${name} exited (${code}) before listening`)));
    setTimeout(() => reject(new Error(`${name} printed no address within ${WAIT} ms`)), WAIT);
  });
  await ready;
  return { name, child, port, url: `http://127.0.0.1:${port}`, broker };
}

async function stopGateway(g) {
  g.child.kill('SIGTERM');
  const res = await Promise.race([g.child.exited, sleep(15000).then(() => null)]);
  if (!res) {
    g.child.kill('SIGKILL');
    throw new Error(`${g.name} did not exit within 15 s of SIGTERM`);
  }
  if (res.code !== 0) throw new Error(`${g.name} exited with ${res.code ?? res.signal} after SIGTERM, not 0`);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---- the browser ------------------------------------------------------------

async function launch(extraArgs = []) {
  const ctx = await chromium.launchPersistentContext(tmpDir('sb-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
  return ctx;
}

/** Opens the live-comments page; returns a small driver for it. */
async function openPage(ctx, web, gateway, params) {
  const page = await ctx.newPage();
  const name = params.user;
  page.on('console', (m) => {
    // Refused connections while a gateway is down are expected.
    if (!process.env.E2E_VERBOSE && /ERR_CONNECTION_REFUSED/.test(m.text())) return;
    if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[page ${name}] ${m.type()}: ${m.text()}\n`);
  });
  page.on('pageerror', (e) => process.stderr.write(`[page ${name}] uncaught: ${e.message}\n`));
  const q = new URLSearchParams({ gateway: gateway.url, video: '1234', ...params });
  await page.goto(`${web.url}/?${q}`);
  const p = {
    page,
    name,
    async waitFor(what, fn, arg) {
      try {
        await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
      } catch (e) {
        const state = await page.evaluate(() => ({
          status: document.getElementById('status').textContent,
          viewers: document.getElementById('viewers').textContent,
          gap: document.getElementById('gap').textContent,
          notice: document.getElementById('notice').textContent,
          comments: [...document.querySelectorAll('#comments li')].map((li) => `${li.dataset.source}: ${li.textContent}`),
          log: { gaps: window.liveComments?.gaps, events: window.liveComments?.events?.slice(-10) },
        }));
        throw new Error(`page ${name}: ${what}: ${e.message.split('\n')[0]}\n  page state: ${JSON.stringify(state)}`);
      }
    },
    status: () => page.textContent('#status'),
    waitStatus(s) {
      return p.waitFor(`status ${s}`, (s) => document.getElementById('status').textContent === s, s);
    },
    async post(text) {
      // Enter submits the form. (A click would wait for animation frames,
      // which a background tab does not get.)
      await page.fill('#text', text);
      await page.press('#text', 'Enter');
    },
    /** Waits for a comment whose text is exactly `text`; returns {source, html}. */
    async comment(text) {
      await p.waitFor(`comment ${JSON.stringify(text)}`, (t) =>
        [...document.querySelectorAll('#comments li .text')].some((el) => el.textContent === t), text);
      return page.evaluate((t) => {
        const el = [...document.querySelectorAll('#comments li .text')].find((e) => e.textContent === t);
        return { source: el.parentElement.dataset.source, html: el.innerHTML, elements: el.children.length, id: el.parentElement.dataset.id };
      }, text);
    },
    count: (user) => page.evaluate((u) => [...document.querySelectorAll('#comments li .user')].filter((e) => e.textContent === u).length, user),
    gaps: () => page.evaluate(() => window.liveComments.gaps),
  };
  return p;
}

// ---- the phases -------------------------------------------------------------

async function phaseOne(ctx, web, g1) {
  const ann = await openPage(ctx, web, g1, { user: 'ann', lang: 'en' });
  await ann.waitStatus('open');
  await ann.waitFor('title from the hello event', () => document.getElementById('title').textContent.startsWith('Rocket launch'));
  await ann.waitFor('1 viewer', () => document.getElementById('viewers').textContent === '1');
  const bea = await openPage(ctx, web, g1, { user: 'bea', lang: 'fr' });
  await bea.waitStatus('open');
  await bea.waitFor('2 viewers', () => document.getElementById('viewers').textContent === '2');
  await ann.waitFor('2 viewers', () => document.getElementById('viewers').textContent === '2');
  ok('two pages open over WebSocket; the viewer counter reaches 2 on both');

  await ann.post('Hello <b>world</b>, great goal!');
  const seen = await bea.comment('Bonjour <b>monde</b>, génial but!');
  check(seen.source === 'live', `bea got it as ${seen.source}, not live`);
  check(seen.elements === 0, `the comment's HTML was not escaped: ${seen.html}`);
  const own = await ann.comment('Hello <b>world</b>, great goal!');
  check(own.elements === 0, 'escaped for the poster too');
  ok('one page posts, the other sees it live, translated to its language and HTML-escaped');

  for (let i = 2; i <= 6; i++) await ann.post(`comment number ${i}`);
  await ann.waitFor('the rate-limit notice', () => document.getElementById('notice').textContent.startsWith('Slow down'));
  await bea.comment('comment number 5');
  await sleep(500);
  check((await bea.count('ann')) === 5, `bea sees ${await bea.count('ann')} of ann's comments, not 5 (the 6th is over the limit)`);
  ok('the publish path is rate limited: 5 comments per 10 s, the 6th is refused with a notice');
  return { ann, bea };
}

async function phaseRestartMemory(ctx, sseCtx, web, lambda, g1, pages) {
  const { ann, bea } = pages;
  const sse = await openPage(sseCtx, web, g1, { user: 'dee', lang: 'de', transport: 'sse' });
  await sse.waitStatus('open');
  await bea.post('hello everyone');
  await ann.comment('hello everyone');
  await bea.comment('bonjour tout le monde');
  const viaSse = await sse.comment('hallo alle');
  check(viaSse.source === 'live', 'SSE page got it live');
  const beaEvents = await bea.page.evaluate(() => window.liveComments.events.filter((e) => e.event === 'comment' && e.id).length);
  check(beaEvents >= 1, 'comment events carry a cursor id');
  ok('a third page on the SSE transport sees comments live');

  const g2 = await startGateway('gateway-2', await freePort(), `${lambda.url}/index.php`);
  const cy = await openPage(ctx, web, g2, { user: 'cy', lang: 'en' });
  await cy.waitStatus('open');

  await stopGateway(g1);
  await bea.waitFor('reconnecting', () => document.getElementById('status').textContent !== 'open');
  ok('gateway 1 stopped (SIGTERM, exit 0); the pages show they are reconnecting');

  await cy.post('Hello while you were away');
  await cy.comment('Hello while you were away');
  await sleep(1500); // a few failed reconnects: the backoff grows
  const g1b = await startGateway('gateway-1 (restarted)', g1.port, `${lambda.url}/index.php`);

  const missed = await bea.comment('Bonjour pendant vous étiez absent');
  check(missed.source === 'refetch', `bea got the missed comment as ${missed.source}, not by refetch after gap`);
  const gaps = await bea.gaps();
  check(gaps.length >= 1 && gaps[0].includes('live_video_comment/1234'), `bea's gaps: ${JSON.stringify(gaps)}`);
  await bea.waitFor('the gap notice', () => !document.getElementById('gap').hidden && /refetched 1 missed comment/.test(document.getElementById('gap').textContent));
  await bea.waitStatus('open');
  ok('after the restart (new epoch) the WebSocket page resumes, gets `gap` and refetches the missed comment');

  const sseMissed = await sse.comment('Hallo während du warst weg');
  check(sseMissed.source === 'refetch', `the SSE page got it as ${sseMissed.source}`);
  check((await sse.gaps()).length >= 1, 'the SSE page saw the gap');
  ok('the SSE page reconnects too (?resume=), gets `gap` and refetches');

  await ann.waitStatus('open');
  await ann.post('amazing');
  const after = await bea.comment('incroyable');
  check(after.source === 'live', 'live again after the restart');
  await sse.comment('erstaunlich');
  ok('after the restart, comments flow live again to both transports');
  await Promise.all([ann.page.close(), bea.page.close(), cy.page.close(), sse.page.close()]);
  await stopGateway(g2);
  await stopGateway(g1b);
}

async function redisSupported(redisPort) {
  const r = spawnSync(BIN, ['serve', '--listen', '127.0.0.1:0', '--broker', `redis://127.0.0.1:${redisPort}`], {
    timeout: 3000,
    encoding: 'utf8',
    killSignal: 'SIGKILL',
  });
  // Still running after 3 s (killed by the timeout), or printed its address: supported.
  if (r.signal === 'SIGKILL' || /listening on/.test(r.stdout || '')) return { ok: true };
  return { ok: false, why: (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').pop() };
}

async function phaseRestartRedis(ctx, web, lambda) {
  if (spawnSync('sh', ['-c', `command -v ${REDIS}`]).status !== 0) {
    return `${REDIS} is not installed`;
  }
  const redisPort = await freePort();
  const redis = run('redis', REDIS, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning']);
  await waitPort(redisPort, 'redis-server');
  try {
    const support = await redisSupported(redisPort);
    if (!support.ok) return `the gateway has no Redis broker yet: ${support.why}`;
    const broker = `redis://127.0.0.1:${redisPort}`;
    const lambdaUrl = `${lambda.url}/index.php`;
    let g1 = await startGateway('gateway-1 (redis)', await freePort(), lambdaUrl, broker);
    const g2 = await startGateway('gateway-2 (redis)', await freePort(), lambdaUrl, broker);
    const eva = await openPage(ctx, web, g1, { user: 'eva', lang: 'es', video: '42' });
    const fay = await openPage(ctx, web, g2, { user: 'fay', lang: 'en', video: '42' });
    await eva.waitStatus('open');
    await fay.waitStatus('open');
    await fay.post('hello world');
    await eva.comment('hola mundo');
    ok('redis: two gateways share the broker; a comment posted on one reaches a page on the other');

    await stopGateway(g1);
    await eva.waitFor('reconnecting', () => document.getElementById('status').textContent !== 'open');
    await fay.post('Hello while you were away');
    await fay.comment('Hello while you were away');
    await sleep(1000);
    g1 = await startGateway('gateway-1 (redis, restarted)', g1.port, lambdaUrl, broker);
    const missed = await eva.comment('Hola mientras tú estabas fuera');
    check(missed.source === 'live', `eva got it as ${missed.source}: it should be replayed on resume, not refetched`);
    check((await eva.gaps()).length === 0, `eva saw a gap: ${JSON.stringify(await eva.gaps())}`);
    ok('redis: the page resumes after the restart and gets the comment posted while its gateway was down, with no gap');
    await Promise.all([eva.page.close(), fay.page.close()]);
    await stopGateway(g1);
    await stopGateway(g2);
    return null;
  } finally {
    redis.kill('SIGTERM');
  }
}

/** Does the gateway let a page on another origin read SSE (CORS)? */
async function sseAllowsCrossOrigin(g, web) {
  const ac = new AbortController();
  try {
    const r = await fetch(`${g.url}/v1/sse/live_comments?video=1234&user=probe`, { headers: { origin: web.url }, signal: ac.signal });
    return Boolean(r.headers.get('access-control-allow-origin'));
  } catch {
    return false;
  } finally {
    ac.abort();
  }
}

async function main() {
  check(BIN, 'set SWITCHBOARD_BIN to the gateway binary (cargo build -p switchboard)');
  const data = tmpDir('sb-live-comments-');
  const env = { LIVE_COMMENTS_DATA: data, PHP_CLI_SERVER_WORKERS: '4' };
  const lambda = await startPhp('lambda', [path.join(example, 'lambda/index.php')], env);
  const web = await startPhp('web', ['-t', path.join(example, 'public'), path.join(example, 'web.php')], env);
  pageOrigin = web.url;
  const g1 = await startGateway('gateway-1', await freePort(), `${lambda.url}/index.php`);

  const ctx = await launch();
  let sseCtx = ctx;
  try {
    const pages = await phaseOne(ctx, web, g1);
    if (!(await sseAllowsCrossOrigin(g1, web))) {
      note('the gateway sends no Access-Control-Allow-Origin on /v1/sse: the SSE page runs in a browser with --disable-web-security');
      sseCtx = await launch(['--disable-web-security']);
    }
    await phaseRestartMemory(ctx, sseCtx, web, lambda, g1, pages);
    const skipped = await phaseRestartRedis(ctx, web, lambda);
    if (skipped) {
      if (process.env.E2E_REQUIRE_REDIS) throw new Error(`redis phase: ${skipped}`);
      note(`SKIP redis phase: ${skipped}`);
    }
  } finally {
    if (sseCtx !== ctx) await sseCtx.close().catch(() => {});
    await ctx.close().catch(() => {});
  }
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL ${e.stack || e}`);
} finally {
  cleanup();
}
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
