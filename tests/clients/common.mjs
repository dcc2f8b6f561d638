// Shared helpers for the matrix-js-sdk scenarios (js_chat.mjs, js_e2ee.mjs):
// SDK log silencing (MX_VERBOSE=1 keeps it), account creation through the
// real /register + /login endpoints, and promise-based waits on SDK events.
import "./polyfill.mjs";
import * as sdk from "matrix-js-sdk";
import assert from "node:assert/strict";

// The SDK logs every request at debug level through console.*; keep only
// errors unless asked.  Our own progress lines go straight to stdout.
if (!process.env.MX_VERBOSE) {
  const noop = () => {};
  console.log = console.info = console.debug = console.trace = noop;
  console.warn = noop;
}

export function mkLog(tag) {
  return (...a) => process.stdout.write(`[${tag}] ${a.join(" ")}\n`);
}

export const rnd = () => Math.random().toString(36).slice(2, 10);

// Register NAME through /register (m.login.dummy), then log in with the
// password; returns an unstarted client for the login's device.
export async function register(base, name, extra = {}) {
  const c = sdk.createClient({ baseUrl: base });
  const res = await c.registerRequest({ username: name, password: "pw-" + name,
                                        auth: { type: "m.login.dummy" } });
  return login(base, name, res.user_id, extra);
}

// A new device for an existing account (password "pw-" + NAME).
export async function login(base, name, expectUserId = null, extra = {}) {
  const res = await sdk.createClient({ baseUrl: base }).loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: "pw-" + name });
  if (expectUserId) assert.equal(res.user_id, expectUserId);
  return sdk.createClient({ baseUrl: base, accessToken: res.access_token, userId: res.user_id,
                            deviceId: res.device_id, ...extra });
}

// Resolve with the first live timeline event matching PRED.
export function waitFor(client, pred, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { client.off(sdk.RoomEvent.Timeline, on); reject(new Error("timeout: " + what)); }, ms);
    function on(ev, room, toStart) {
      if (!toStart && pred(ev, room)) { clearTimeout(t); client.off(sdk.RoomEvent.Timeline, on); resolve(ev); }
    }
    client.on(sdk.RoomEvent.Timeline, on);
  });
}

// Poll CHECK (sync or async) until it returns a truthy value.
export async function until(check, what, ms = 10000, step = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error("timeout: " + what);
    await new Promise((r) => setTimeout(r, step));
  }
}

// Start the client and wait for its first sync to finish.
export async function synced(client, opts = {}) {
  await new Promise((resolve, reject) => {
    const on = (state) => {
      if (state === "PREPARED" || state === "SYNCING") { client.off(sdk.ClientEvent.Sync, on); resolve(); }
      else if (state === "ERROR") { client.off(sdk.ClientEvent.Sync, on); reject(new Error("sync error")); }
    };
    client.on(sdk.ClientEvent.Sync, on);
    client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true, ...opts });
  });
}

// Wait until CLIENT has ROOMID with my membership MEMBERSHIP.
export function membership(client, roomId, m, ms = 10000) {
  return until(() => client.getRoom(roomId)?.getMyMembership() === m, `${m} in ${roomId}`, ms);
}
