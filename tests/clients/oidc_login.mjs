// tests/clients/oidc_login.mjs: the OAuth 2.0 login as Element Web runs it
// (MSC3861 next-generation auth), with the sign-in page driven in headless
// Debian Chromium through npm playwright-core.  It starts its own mxstack
// (homeserver + auth, delegated, SQLite), makes a user with shared-secret
// registration, then: discovery through /_matrix/client/v1/auth_metadata,
// dynamic client registration, a PKCE S256 authorization URL, the login
// form and the consent form filled in Chromium, the redirect to the
// client's URI caught in the browser, the code exchange, /whoami with the
// access token, a refresh (rotation), revocation, and /whoami → 401.
// Screenshots go to tests/artifacts/oidc/ (gitignored).
//
//   MXSTACK_BIN=/path/to/mxstack node tests/clients/oidc_login.mjs
//
// Exit status 0 when every step passed; each step prints "ok" or "FAIL".
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(HERE, '../artifacts/oidc');
const BIN = process.env.MXSTACK_BIN;
const CHROMIUM = process.env.MX_CHROMIUM || '/usr/bin/chromium';
const SECRET = 'oidc_test_secret';
const REDIRECT = 'http://127.0.0.1:8765/callback';

if (!BIN || !fs.existsSync(CHROMIUM)) {
  console.error(!BIN ? 'set MXSTACK_BIN' : `${CHROMIUM} is missing`);
  process.exit(2);
}

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mxoidc-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  fs.writeFileSync(path.join(dir, 'c.yaml'), `server_name: "localhost:${port}"
public_baseurl: "${url}/"
listeners: [{port: ${port}, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{names: [client, federation, media, admin, health, auth]}]}]
database: {name: sqlite3, args: {database: ${dir}/hs.db}}
signing_key_path: ${dir}/signing.key
media_store_path: ${dir}/media
registration_shared_secret: ${SECRET}
log_file: ${dir}/server.log
modules: [homeserver, auth]
auth: {delegate_homeserver: true}
homeserver: {rc_login_per_second: 1000, rc_login_burst: 1000,
             argon2_opslimit: 1, argon2_memlimit_kib: 64}
`);
  const proc = spawn(BIN, ['serve', '-c', path.join(dir, 'c.yaml')], { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) break;
    try { if ((await fetch(`${url}/ready`)).ok) return { dir, url, proc }; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGTERM');
  throw new Error(`mxstack did not start:\n${fs.readFileSync(path.join(dir, 'server.log'), 'utf8').slice(-3000)}`);
}

async function call(url, method, body, headers = {}) {
  const r = await fetch(url, { method, headers, body });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}
const jsonBody = (o) => [JSON.stringify(o), { 'Content-Type': 'application/json' }];
const form = (o) => [new URLSearchParams(o).toString(), { 'Content-Type': 'application/x-www-form-urlencoded' }];
const b64url = (b) => b.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function registerShared(srv, username, password) {
  const n = await call(`${srv.url}/_synapse/admin/v1/register`, 'GET');
  const mac = crypto.createHmac('sha1', SECRET)
    .update(`${n.json.nonce}\0${username}\0${password}\0notadmin`).digest('hex');
  const [b, h] = jsonBody({ nonce: n.json.nonce, username, password, admin: false, mac });
  const r = await call(`${srv.url}/_synapse/admin/v1/register`, 'POST', b, h);
  if (r.status !== 200) throw new Error(`register: ${r.status} ${r.text}`);
  return r.json;
}

const results = [];
let page = null;
let shot = 0;
async function step(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${String(e.message || e).split('\n')[0]}`);
  }
  if (page) {
    shot += 1;
    const f = path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.png`);
    await page.screenshot({ path: f, fullPage: true }).catch(() => {});
  }
}
function assert(c, m) { if (!c) throw new Error(m); }

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const srv = await startServer();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mxoidc-chromium-'));
  let ctx = null;
  const s = {};
  try {
    const user = `eve${crypto.randomBytes(3).toString('hex')}`;
    const reg = await registerShared(srv, user, 'eve-pw-12345');
    await step('discovery via auth_metadata', async () => {
      const r = await call(`${srv.url}/_matrix/client/v1/auth_metadata`, 'GET');
      assert(r.status === 200, `auth_metadata ${r.status}`);
      s.meta = r.json;
      for (const k of ['issuer', 'authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint'])
        assert(s.meta[k], `no ${k}`);
      assert(s.meta.code_challenge_methods_supported.includes('S256'), 'no S256');
    });
    await step('dynamic client registration', async () => {
      const [b, h] = jsonBody({
        client_name: 'Element Web (test)', client_uri: 'http://127.0.0.1:8765/',
        redirect_uris: [REDIRECT], application_type: 'web', token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      });
      const r = await call(s.meta.registration_endpoint, 'POST', b, h);
      assert(r.status === 201 || r.status === 200, `registration ${r.status} ${r.text}`);
      s.clientId = r.json.client_id;
    });
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1000, height: 800 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = ctx.pages()[0] || await ctx.newPage();
    // The client's redirect URI is not served: catch the browser going there.
    let redirected = null;
    await ctx.route('http://127.0.0.1:8765/**', (route) => {
      redirected = route.request().url();
      route.fulfill({ status: 200, contentType: 'text/html', body: '<p>back in the client</p>' });
    });
    await step('PKCE authorization URL opens the login page', async () => {
      s.verifier = b64url(crypto.randomBytes(48));
      s.state = b64url(crypto.randomBytes(12));
      const device = `OIDC${crypto.randomBytes(4).toString('hex').toUpperCase()}`;
      s.device = device;
      const u = new URL(s.meta.authorization_endpoint);
      u.search = new URLSearchParams({
        response_type: 'code', client_id: s.clientId, redirect_uri: REDIRECT,
        scope: `openid urn:matrix:client:api:* urn:matrix:client:device:${device}`,
        state: s.state, nonce: b64url(crypto.randomBytes(12)), response_mode: 'query',
        code_challenge: b64url(crypto.createHash('sha256').update(s.verifier).digest()),
        code_challenge_method: 'S256',
      }).toString();
      await page.goto(u.toString());
      await page.waitForSelector('input[name=username]');
    });
    await step('login form filled in chromium', async () => {
      await page.fill('input[name=username]', user);
      await page.fill('input[name=password]', 'eve-pw-12345');
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
      assert(/consent/.test(page.url()), `not on consent: ${page.url()}`);
    });
    await step('consent → redirect with code', async () => {
      await page.click('button[value=allow]');
      for (let i = 0; i < 100 && !redirected; i++) await new Promise((r) => setTimeout(r, 50));
      assert(redirected, 'no redirect to the client');
      const q = new URL(redirected).searchParams;
      assert(q.get('state') === s.state, 'state differs');
      s.code = q.get('code');
      assert(s.code, 'no code');
    });
    await step('code exchange', async () => {
      const [b, h] = form({ grant_type: 'authorization_code', code: s.code, redirect_uri: REDIRECT,
        client_id: s.clientId, code_verifier: s.verifier });
      const r = await call(s.meta.token_endpoint, 'POST', b, h);
      assert(r.status === 200, `token ${r.status} ${r.text}`);
      s.tok = r.json;
    });
    const whoami = (t) => call(`${srv.url}/_matrix/client/v3/account/whoami`, 'GET', undefined, { Authorization: `Bearer ${t}` });
    await step('whoami with the access token', async () => {
      const r = await whoami(s.tok.access_token);
      assert(r.status === 200 && r.json.user_id === reg.user_id && r.json.device_id === s.device,
        `whoami ${r.status} ${r.text}`);
    });
    await step('refresh (rotation)', async () => {
      const [b, h] = form({ grant_type: 'refresh_token', refresh_token: s.tok.refresh_token, client_id: s.clientId });
      const r = await call(s.meta.token_endpoint, 'POST', b, h);
      assert(r.status === 200 && r.json.refresh_token !== s.tok.refresh_token, `refresh ${r.status} ${r.text}`);
      s.tok = r.json;
      assert((await whoami(s.tok.access_token)).status === 200, 'new token refused');
    });
    await step('revoke → 401', async () => {
      const [b, h] = form({ token: s.tok.access_token, token_type_hint: 'access_token', client_id: s.clientId });
      const r = await call(s.meta.revocation_endpoint, 'POST', b, h);
      assert(r.status === 200, `revoke ${r.status} ${r.text}`);
      const w = await whoami(s.tok.access_token);
      assert(w.status === 401, `whoami after revoke ${w.status}`);
    });
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    srv.proc.kill('SIGTERM');
    fs.rmSync(profile, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r).length;
  console.log(failed ? `oidc login: ${failed} step(s) FAILED` : `oidc login: ${results.length} steps ok`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
