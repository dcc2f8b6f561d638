// tests/clients/console.spec.mjs: the built-in admin console (web/admin,
// served by the admin module) driven in headless Debian Chromium through
// npm playwright-core.  It starts its own mxstack (modules homeserver +
// admin, SQLite), makes an admin with shared-secret registration and a
// room with a reported message through the client API, then in the
// browser: a non-admin is refused; the admin signs in, sees the dashboard,
// creates a user, finds it in the list, makes it an admin, resets its
// password, locks and deactivates it, creates and deletes a registration
// token, opens and deletes the event report, opens the federation view,
// deletes the room and waits for the deletion to reach "complete", signs
// out.  Any script or CSP error in the page fails the run, and so does an
// unclean server exit.
// Screenshots go to tests/artifacts/console/ (gitignored).
//
//   MXSTACK_BIN=/path/to/mxstack node tests/clients/console.spec.mjs
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
const ARTIFACTS = path.resolve(HERE, '../artifacts/console');
const BIN = process.env.MXSTACK_BIN;
const CHROMIUM = process.env.MX_CHROMIUM || '/usr/bin/chromium';
const SECRET = 'console_test_secret';
const STEP_TIMEOUT = 20000;

if (!BIN) {
  console.error('set MXSTACK_BIN');
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing (apt-get install chromium; contrib/deps.sh lists it)`);
  process.exit(2);
}

// ------------------------------------------------------------ server --

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mxconsole-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  fs.writeFileSync(path.join(dir, 'c.yaml'), `server_name: "localhost:${port}"
public_baseurl: "${url}/"
listeners: [{port: ${port}, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{names: [client, federation, media, admin, health]}]}]
database: {name: sqlite3, args: {database: ${dir}/hs.db}}
signing_key_path: ${dir}/signing.key
media_store_path: ${dir}/media
registration_shared_secret: ${SECRET}
enable_registration: true
log_file: ${dir}/server.log
modules: [homeserver, admin]
homeserver: {rc_message_per_second: 1000, rc_message_burst: 1000, rc_login_per_second: 1000,
             rc_login_burst: 1000, rc_registration_per_second: 1000, rc_registration_burst: 1000,
             argon2_opslimit: 1, argon2_memlimit_kib: 64}
`);
  const proc = spawn(BIN, ['serve', '-c', path.join(dir, 'c.yaml')], { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = code ?? sig; });
  for (let i = 0; i < 300; i++) {
    if (exited !== null) throw new Error(`mxstack exited (${exited}):\n${tail(dir)}`);
    try {
      const r = await fetch(`${url}/ready`);
      if (r.ok) return { dir, url, port, proc, serverName: `localhost:${port}` };
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGTERM');
  throw new Error(`mxstack did not become ready:\n${tail(dir)}`);
}

function tail(dir, n = 40) {
  try {
    return fs.readFileSync(path.join(dir, 'server.log'), 'utf8').trim().split('\n').slice(-n).join('\n');
  } catch {
    return '(no server log)';
  }
}

async function stopServer(srv) {
  if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) return srv.proc.exitCode;
  const done = new Promise((resolve) => srv.proc.on('exit', (code) => resolve(code)));
  srv.proc.kill('SIGTERM');
  const t = setTimeout(() => srv.proc.kill('SIGKILL'), 15000);
  const code = await done;
  clearTimeout(t);
  return code;
}

// ---------------------------------------------------- HTTP from the test --

async function call(srv, method, p, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(srv.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

// Shared-secret registration, as synapse's register_new_matrix_user does:
// HMAC-SHA1 over nonce, user, password and "admin"/"notadmin", NUL-separated.
async function registerShared(srv, username, password, admin) {
  const n = await call(srv, 'GET', '/_synapse/admin/v1/register');
  if (n.status !== 200) throw new Error(`nonce: ${n.status} ${n.text}`);
  const mac = crypto.createHmac('sha1', SECRET)
    .update(`${n.json.nonce}\0${username}\0${password}\0${admin ? 'admin' : 'notadmin'}`)
    .digest('hex');
  const r = await call(srv, 'POST', '/_synapse/admin/v1/register', {
    nonce: n.json.nonce, username, password, admin, mac,
  });
  if (r.status !== 200) throw new Error(`register ${username}: ${r.status} ${r.text}`);
  return { ...r.json, password };
}

// ------------------------------------------------------------- steps --

const results = [];
let page = null;
let shot = 0;

async function screenshot(name) {
  if (!page) return;
  shot += 1;
  const file = path.join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    await screenshot(name.replace(/[^a-z0-9]+/gi, '-').toLowerCase());
  } catch (e) {
    results.push({ name, ok: false, err: e });
    console.log(`FAIL ${name}: ${String(e.message || e).split('\n')[0]}`);
    await screenshot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// -------------------------------------------------------------- main --

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));

  const srv = await startServer();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mxconsole-chromium-'));
  let ctx = null;
  const pageErrors = [];
  const suffix = crypto.randomBytes(3).toString('hex');
  try {
    const admin = await registerShared(srv, `admin${suffix}`, 'admin-pw-1234', true);
    const owner = await registerShared(srv, `owner${suffix}`, 'owner-pw-1234', false);
    const roomName = `Console room ${suffix}`;
    const created = await call(srv, 'POST', '/_matrix/client/v3/createRoom',
      { name: roomName, preset: 'private_chat' }, owner.access_token);
    assert(created.status === 200, `createRoom: ${created.status} ${created.text}`);
    const roomId = created.json.room_id;
    const sent = await call(srv, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`,
      { msgtype: 'm.text', body: 'please report me' }, owner.access_token);
    assert(sent.status === 200, `send: ${sent.status} ${sent.text}`);
    const reported = await call(srv, 'POST',
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/report/${encodeURIComponent(sent.json.event_id)}`,
      { reason: `console report ${suffix}`, score: -100 }, owner.access_token);

    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    ctx.setDefaultTimeout(STEP_TIMEOUT);
    page = ctx.pages()[0] || await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
    });

    await step('console page loads with a strict CSP', async () => {
      const resp = await page.goto(`${srv.url}/admin/`);
      assert(resp.status() === 200, `GET /admin/: ${resp.status()}`);
      const csp = resp.headers()['content-security-policy'] || '';
      assert(csp.includes("default-src 'self'"), `CSP: ${csp}`);
      assert((await page.title()) === 'mxstack admin', 'title');
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    });

    await step('a non-admin is refused', async () => {
      const form = page.locator('#login-form');
      await form.getByLabel('User ID', { exact: true }).fill(owner.user_id);
      await form.getByLabel('Password', { exact: true }).fill(owner.password);
      await form.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#login-error').filter({ hasText: 'not a server admin' }).waitFor();
    });

    await step('admin signs in and sees the dashboard', async () => {
      const form = page.locator('#login-form');
      await form.getByLabel('User ID', { exact: true }).fill(admin.user_id);
      await form.getByLabel('Password', { exact: true }).fill(admin.password);
      await form.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
      await page.locator('#stat-users').filter({ hasText: /^\d+$/ }).waitFor();
      await page.locator('#stat-rooms').filter({ hasText: /^\d+$/ }).waitFor();
      await page.locator('#stat-version').filter({ hasNotText: '…' }).waitFor();
      await page.locator('#stat-health').filter({ hasNotText: '…' }).waitFor();
      const token = await page.evaluate(() => sessionStorage.getItem('mxstack.admin.session'));
      assert(token && JSON.parse(token).token, 'token kept in sessionStorage');
    });

    const newLocal = `consoleuser${suffix}`;
    const newId = `@${newLocal}:${srv.serverName}`;
    await step('create a user', async () => {
      await page.getByRole('link', { name: 'Users' }).click();
      await page.getByRole('heading', { name: 'Users', exact: true }).waitFor();
      await page.locator('#user-create > summary').click();
      const form = page.locator('#user-create-form');
      await form.getByLabel('User ID or localpart').fill(newLocal);
      await form.getByLabel('Password', { exact: true }).fill('new-user-pw-1');
      await form.getByLabel('Display name (optional)').fill('Console User');
      await form.getByRole('button', { name: 'Create user' }).click();
      await page.locator('#status').filter({ hasText: `Created ${newId}` }).waitFor();
      const r = await call(srv, 'GET', `/_synapse/admin/v2/users/${encodeURIComponent(newId)}`, undefined, admin.access_token);
      assert(r.status === 200 && r.json.displayname === 'Console User', `user via API: ${r.status} ${r.text}`);
    });

    await step('find the user in the list', async () => {
      const form = page.locator('#users-search');
      await form.getByLabel('Search users').fill(newLocal);
      await form.getByRole('button', { name: 'Search', exact: true }).click();
      const row = page.locator(`#users-table tbody tr[data-user="${newId}"]`);
      await row.waitFor();
      assert((await page.locator('#users-table tbody tr').count()) === 1, 'search shows one row');
      assert((await row.textContent()).includes('Console User'), 'display name in the row');
    });

    await step('make the user an admin', async () => {
      await page.getByRole('button', { name: `Manage ${newId}` }).click();
      await page.locator('#user-detail-title').filter({ hasText: newId }).waitFor();
      await page.getByRole('button', { name: 'Make admin' }).click();
      await page.getByRole('button', { name: 'Remove admin' }).waitFor();
      const r = await call(srv, 'GET', `/_synapse/admin/v1/users/${encodeURIComponent(newId)}/admin`, undefined, admin.access_token);
      assert(r.status === 200 && r.json.admin === true, `admin flag via API: ${r.status} ${r.text}`);
    });

    await step('reset password, lock and deactivate the user', async () => {
      const uri = `/_synapse/admin/v2/users/${encodeURIComponent(newId)}`;
      const form = page.locator('#user-password-form');
      await form.getByLabel('New password').fill('changed-pw-2');
      await form.getByRole('button', { name: 'Reset password' }).click();
      await page.locator('#status').filter({ hasText: `Password reset: ${newId}` }).waitFor();
      const login = await call(srv, 'POST', '/_matrix/client/v3/login', {
        type: 'm.login.password', identifier: { type: 'm.id.user', user: newId }, password: 'changed-pw-2',
      });
      assert(login.status === 200, `login with the new password: ${login.status} ${login.text}`);
      await page.getByRole('button', { name: 'Lock', exact: true }).click();
      await page.getByRole('button', { name: 'Unlock', exact: true }).waitFor();
      let r = await call(srv, 'GET', uri, undefined, admin.access_token);
      assert(r.json?.locked === true, `locked via API: ${r.text}`);
      await page.getByRole('button', { name: 'Deactivate', exact: true }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Deactivate' }).click();
      await page.locator('#user-detail-kv dd').nth(3).filter({ hasText: 'yes' }).waitFor();
      r = await call(srv, 'GET', uri, undefined, admin.access_token);
      assert(r.json?.deactivated === true, `deactivated via API: ${r.text}`);
    });

    await step('create and delete a registration token', async () => {
      const tok = `tok${suffix}`;
      await page.getByRole('link', { name: 'Registration tokens' }).click();
      await page.locator('#token-create > summary').click();
      await page.getByLabel('Token (empty: random)').fill(tok);
      await page.getByLabel('Uses allowed (empty: unlimited)').fill('3');
      await page.getByRole('button', { name: 'Create token' }).click();
      const row = page.locator(`#tokens-table tbody tr[data-token="${tok}"]`);
      await row.waitFor();
      await page.getByRole('button', { name: `Delete token ${tok}` }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete token' }).click();
      await row.waitFor({ state: 'detached' });
    });

    await step('event reports: list, details, delete', async () => {
      assert(reported.status === 200, `reporting through the client API: ${reported.status} ${reported.text}`);
      await page.getByRole('link', { name: 'Event reports' }).click();
      const row = page.locator('#reports-table tbody tr[data-report]').filter({ hasText: `console report ${suffix}` });
      await row.waitFor();
      const id = await row.getAttribute('data-report');
      await page.getByRole('button', { name: `Details of report ${id}` }).click();
      await page.locator('#report-detail-json').filter({ hasText: sent.json.event_id }).waitFor();
      await page.getByRole('button', { name: `Delete report ${id}` }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete report' }).click();
      await row.waitFor({ state: 'detached' });
    });

    await step('federation view loads', async () => {
      await page.getByRole('link', { name: 'Federation' }).click();
      await page.locator('#federation-table tbody tr').first().waitFor();
    });

    await step('delete a room and watch it reach "complete"', async () => {
      await page.getByRole('link', { name: 'Rooms' }).click();
      const form = page.locator('#rooms-search');
      await form.getByLabel('Search rooms').fill(roomName);
      await form.getByRole('button', { name: 'Search', exact: true }).click();
      await page.locator(`#rooms-table tbody tr[data-room="${roomId}"]`).waitFor();
      await page.getByRole('button', { name: `Details of ${roomName}` }).click();
      await page.locator('#room-members li').filter({ hasText: owner.user_id }).waitFor();
      await page.getByRole('button', { name: `Delete ${roomName}` }).click();
      const dlg = page.getByRole('dialog');
      await dlg.getByRole('button', { name: 'Delete room' }).click();
      const item = page.locator(`#room-deletions-list li[data-room="${roomId}"]`);
      await item.waitFor();
      await screenshot('room-deletion-in-progress');
      await item.locator('.state').filter({ hasText: /^complete$/ }).waitFor({ timeout: 60000 });
      assert(Number(await item.locator('progress').getAttribute('value')) === 3, 'progress at its end');
      const r = await call(srv, 'GET', '/_matrix/client/v3/joined_rooms', undefined, owner.access_token);
      assert(r.status === 200 && !r.json.joined_rooms.includes(roomId), `owner still in room: ${r.text}`);
    });

    await step('no script or CSP errors in the page', async () => {
      assert(pageErrors.length === 0, pageErrors.join('\n'));
    });

    await step('sign out', async () => {
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      assert(await page.evaluate(() => sessionStorage.getItem('mxstack.admin.session')) === null, 'session cleared');
    });
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    const code = await stopServer(srv);
    const failed = results.filter((r) => !r.ok);
    if (failed.length || code !== 0) {
      console.log(`mxstack exit status ${code}; server log tail:\n${tail(srv.dir)}`);
    }
    fs.rmSync(srv.dir, { recursive: true, force: true });
    if (code !== 0) results.push({ name: 'mxstack exits cleanly', ok: false });
  }
  const failed = results.filter((r) => !r.ok);
  console.log(`admin console: ${results.length - failed.length}/${results.length} steps passed; screenshots in ${ARTIFACTS}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
