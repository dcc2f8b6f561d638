// Two users chat through matrix-js-sdk against a running mxstack:
// register + login, create a room, invite, join, exchange messages with live
// /sync, paginate back, reply in a thread, react, edit, read receipts,
// typing, profile change.  Usage: node js_chat.mjs BASE_URL
import "./polyfill.mjs";
import * as sdk from "matrix-js-sdk";
import assert from "node:assert/strict";

const base = process.argv[2];
const log = (...a) => console.log("[js]", ...a);
const rnd = () => Math.random().toString(36).slice(2, 10);

async function register(name) {
  const c = sdk.createClient({ baseUrl: base });
  const res = await c.registerRequest({ username: name, password: "pw-" + name,
                                        auth: { type: "m.login.dummy" } });
  const login = await sdk.createClient({ baseUrl: base }).loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: "pw-" + name });
  assert.equal(login.user_id, res.user_id);
  return sdk.createClient({ baseUrl: base, accessToken: login.access_token, userId: login.user_id,
                            deviceId: login.device_id });
}

function waitFor(client, pred, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { client.off(sdk.RoomEvent.Timeline, on); reject(new Error("timeout: " + what)); }, ms);
    function on(ev, room, toStart) {
      if (!toStart && pred(ev, room)) { clearTimeout(t); client.off(sdk.RoomEvent.Timeline, on); resolve(ev); }
    }
    client.on(sdk.RoomEvent.Timeline, on);
  });
}

async function synced(client) {
  await new Promise((resolve) => {
    client.once(sdk.ClientEvent.Sync, (state) => resolve(state));
    client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
  });
}

const alice = await register("alice" + rnd());
const bob = await register("bob" + rnd());
await synced(alice);
await synced(bob);
log("both synced");

const { room_id: roomId } = await alice.createRoom({ name: "js chat", preset: "private_chat",
                                                     invite: [bob.getUserId()] });
log("room", roomId);
await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("invite not seen")), 10000);
  const check = () => { const r = bob.getRoom(roomId); if (r && r.getMyMembership() === "invite") { clearTimeout(t); resolve(); } };
  bob.on(sdk.RoomEvent.MyMembership, check); check();
});
await bob.joinRoom(roomId);
log("bob joined");

const got = waitFor(bob, (ev) => ev.getType() === "m.room.message" && ev.getContent().body === "hello bob", "message to bob");
const sent = await alice.sendTextMessage(roomId, "hello bob");
const ev = await got;
assert.equal(ev.getId(), sent.event_id);
log("live message received");

const reply = waitFor(alice, (e) => e.getContent().body === "hi alice", "reply");
await bob.sendTextMessage(roomId, "hi alice");
await reply;

// many messages, then paginate back from a fresh client
for (let i = 0; i < 30; i++) await alice.sendTextMessage(roomId, "msg " + i);
const page = await bob.createMessagesRequest(roomId, null, 50, sdk.Direction.Backward);
const bodies = page.chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body);
assert.ok(bodies.includes("msg 29") && bodies.includes("msg 0") && bodies.includes("hello bob"));
assert.equal(bodies[0], "msg 29");
log("pagination ok:", page.chunk.length, "events");

// thread reply, reaction, edit
const root = sent.event_id;
await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "in thread",
  "m.relates_to": { rel_type: "m.thread", event_id: root } });
await bob.sendEvent(roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" } });
await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "* hello bob!",
  "m.new_content": { msgtype: "m.text", body: "hello bob!" },
  "m.relates_to": { rel_type: "m.replace", event_id: root } });
log("relations sent");

// read receipt
const lastEv = (await alice.sendTextMessage(roomId, "read me")).event_id;
await bob.sendReadReceipt(new sdk.MatrixEvent({ event_id: lastEv, room_id: roomId, type: "m.room.message" }));
log("receipt sent");

// typing
await bob.sendTyping(roomId, true, 5000);
// profile
await alice.setDisplayName("Alice A.");
const prof = await bob.getProfileInfo(alice.getUserId());
assert.equal(prof.displayname, "Alice A.");
log("profile ok");

alice.stopClient(); bob.stopClient();
log("OK");
process.exit(0);
