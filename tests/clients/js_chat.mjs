// Two users chat through matrix-js-sdk against a running mxstack:
// register + login, create a room, invite, join, exchange messages with live
// /sync, paginate back, reply in a thread, react, edit, read receipts and
// notification counts, typing, presence, profile change, user directory.
// Usage: node js_chat.mjs BASE_URL
import * as sdk from "matrix-js-sdk";
import assert from "node:assert/strict";
import { mkLog, rnd, register, waitFor, until, synced, membership } from "./common.mjs";
import { makeImage, imageSize } from "./media.mjs";

const base = process.argv[2];
const log = mkLog("js");

const alice = await register(base, "alice" + rnd());
const bob = await register(base, "bob" + rnd());
await synced(alice);
await synced(bob);
log("both synced");

const { room_id: roomId } = await alice.createRoom({ name: "js chat", preset: "private_chat",
                                                     invite: [bob.getUserId()] });
log("room", roomId);
await membership(bob, roomId, "invite");
await bob.joinRoom(roomId);
await until(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join",
            "alice sees bob joined");
log("bob joined");

const got = waitFor(bob, (ev) => ev.getType() === "m.room.message" && ev.getContent().body === "hello bob", "message to bob");
const sent = await alice.sendTextMessage(roomId, "hello bob");
const ev = await got;
assert.equal(ev.getId(), sent.event_id);
assert.equal(ev.getSender(), alice.getUserId());
log("live message received");

const reply = waitFor(alice, (e) => e.getContent().body === "hi alice", "reply");
await bob.sendTextMessage(roomId, "hi alice");
await reply;

// many messages, then paginate back
for (let i = 0; i < 30; i++) await alice.sendTextMessage(roomId, "msg " + i);
const page = await bob.createMessagesRequest(roomId, null, 50, sdk.Direction.Backward);
const bodies = page.chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body);
assert.ok(bodies.includes("msg 29") && bodies.includes("msg 0") && bodies.includes("hello bob"), bodies);
assert.equal(bodies[0], "msg 29");
for (let i = 1; i < 30; i++) assert.ok(bodies.indexOf("msg " + (i - 1)) > bodies.indexOf("msg " + i));
// and page forward again from the start of that page
const fwd = await bob.createMessagesRequest(roomId, page.end, 50, sdk.Direction.Forward);
const fbodies = fwd.chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body);
assert.ok(fbodies.indexOf("hello bob") < fbodies.indexOf("msg 0") && fbodies.indexOf("msg 0") < fbodies.indexOf("msg 29") &&
          fbodies.indexOf("hello bob") >= 0, fbodies);
// the live timeline paginates back through the SDK's own machinery too
const bobRoom = bob.getRoom(roomId);
await until(async () => {
  const more = await bob.scrollback(bobRoom, 30);
  return more.getLiveTimeline().getEvents().some((e) => e.getContent().body === "hello bob") ||
    !more.oldState.paginationToken;
}, "scrollback");
assert.ok(bobRoom.getLiveTimeline().getEvents().some((e) => e.getContent().body === "hello bob"));
log("pagination ok:", page.chunk.length, "events");

// thread reply, reaction, edit, rich reply
const root = sent.event_id;
const inThread = await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "in thread",
  "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true,
                    "m.in_reply_to": { event_id: root } } });
const react = await bob.sendEvent(roomId, "m.reaction",
  { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" } });
const edit = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "* hello bob!",
  "m.new_content": { msgtype: "m.text", body: "hello bob!" },
  "m.relates_to": { rel_type: "m.replace", event_id: root } });
const rich = await bob.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "> hello\n\nrich reply",
  "m.relates_to": { "m.in_reply_to": { event_id: root } } });
log("relations sent");
// the server stored them as sent: relations are visible on /event and /context
const fetched = await alice.fetchRoomEvent(roomId, inThread.event_id);
assert.equal(fetched.content["m.relates_to"].rel_type, "m.thread");
const ctx = await alice.http.authedRequest(sdk.Method.Get,
  `/rooms/${encodeURIComponent(roomId)}/context/${encodeURIComponent(edit.event_id)}`, { limit: "10" });
assert.equal(ctx.event.event_id, edit.event_id);
assert.ok(ctx.events_before.some((e) => e.event_id === react.event_id));
// aggregations (the relations part): /relations lists all three, /event bundles thread + edit
{
  const rels = await alice.http.authedRequest(sdk.Method.Get,
    `/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(root)}`, undefined, undefined,
    { prefix: "/_matrix/client/v1" });
  const ids = rels.chunk.map((e) => e.event_id);
  for (const id of [inThread.event_id, react.event_id, edit.event_id]) assert.ok(ids.includes(id), ids);
  const rootEv = await bob.fetchRoomEvent(roomId, root);
  const bundled = rootEv.unsigned?.["m.relations"] ?? {};
  assert.equal(bundled["m.thread"]?.count, 1, JSON.stringify(rootEv.unsigned));
  assert.equal(bundled["m.thread"]?.latest_event?.event_id, inThread.event_id);
  assert.equal(bundled["m.thread"]?.current_user_participated, true);
  assert.equal(bundled["m.replace"]?.event_id, edit.event_id);
  const threads = await alice.http.authedRequest(sdk.Method.Get,
    `/rooms/${encodeURIComponent(roomId)}/threads`, { include: "all" }, undefined,
    { prefix: "/_matrix/client/v1" });
  assert.deepEqual(threads.chunk.map((e) => e.event_id), [root]);
  const mine = await bob.http.authedRequest(sdk.Method.Get,
    `/rooms/${encodeURIComponent(roomId)}/threads`, { include: "participated" }, undefined,
    { prefix: "/_matrix/client/v1" });
  assert.deepEqual(mine.chunk.map((e) => e.event_id), [root]);
  log("relations aggregated");
}

// read receipt: bob reads alice's message, alice's client sees the receipt.
// (Alice's client first has bob's last message: her local echo of "read me"
// would otherwise sit before it and bob's implicit receipt would win.)
const aliceRoom = alice.getRoom(roomId);
await until(() => aliceRoom.findEventById(rich.event_id), "alice has the rich reply");
const lastEv = (await alice.sendTextMessage(roomId, "read me")).event_id;
await until(() => bobRoom.findEventById(lastEv), "bob has 'read me'");
await bob.sendReadReceipt(bobRoom.findEventById(lastEv));
await until(() => aliceRoom.getEventReadUpTo(bob.getUserId()) === lastEv, "alice sees bob's receipt");
log("receipt seen");

// notification counts: alice's messages count for bob until he reads them
for (let i = 0; i < 3; i++) await alice.sendTextMessage(roomId, "unread " + i);
await until(() => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) >= 3,
            "bob's unread count reaches 3");
const mention = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text",
  body: `hey ${bob.getUserId()}`, "m.mentions": { user_ids: [bob.getUserId()] } });
await until(() => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Highlight) >= 1,
            "bob's highlight count");
await until(() => bobRoom.findEventById(mention.event_id), "bob has the mention");
await bob.sendReadReceipt(bobRoom.findEventById(mention.event_id));
await until(() => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) === 0 &&
                  bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Highlight) === 0,
            "bob's counts reset by his receipt");
log("notification counts ok");

// typing: alice's client sees bob typing, then stopping
await bob.sendTyping(roomId, true, 5000);
await until(() => aliceRoom.getMember(bob.getUserId())?.typing === true, "alice sees bob typing");
await bob.sendTyping(roomId, false);
await until(() => aliceRoom.getMember(bob.getUserId())?.typing === false, "alice sees bob stop typing");
log("typing ok");

// presence: bob sets a status, alice's client gets it through /sync
await bob.setPresence({ presence: "online", status_msg: "chatting" });
await until(() => alice.getUser(bob.getUserId())?.presenceStatusMsg === "chatting", "alice sees bob's status");
const pres = await alice.getPresence(bob.getUserId());
assert.equal(pres.presence, "online");
assert.equal(pres.status_msg, "chatting");
log("presence ok");

// profile: the new display name shows on the profile and in the room's member event
await alice.setDisplayName("Alice A.");
const prof = await bob.getProfileInfo(alice.getUserId());
assert.equal(prof.displayname, "Alice A.");
await until(() => bobRoom.getMember(alice.getUserId())?.name === "Alice A.", "member name updated");
log("profile ok");

// user directory: bob finds alice (they share a room) by her new display name
const dir = await bob.searchUserDirectory({ term: "Alice A" });
assert.ok(dir.results.some((u) => u.user_id === alice.getUserId() && u.display_name === "Alice A."), dir);
log("directory ok");

// media: alice uploads a PNG and a JPEG, posts them as m.image; bob downloads
// both (authenticated and legacy paths) and gets scaled/cropped thumbnails
const mcfg = await bob.getMediaConfig(true);
assert.ok(mcfg["m.upload.size"] > 0, JSON.stringify(mcfg));
for (const [fmt, mime] of [["PNG", "image/png"], ["JPEG", "image/jpeg"]]) {
  const bytes = makeImage(fmt, 640, 480);
  const up = await alice.uploadContent(bytes, { type: mime, name: "pic." + fmt.toLowerCase() });
  assert.match(up.content_uri, /^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/);
  const img = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.image", body: "pic",
    url: up.content_uri, info: { mimetype: mime, w: 640, h: 480, size: bytes.length } });
  const seen = await until(() => bobRoom.findEventById(img.event_id), "bob has the image event");
  const mxc = seen.getContent().url;
  const get = async (url, auth) => {
    const r = await fetch(url, auth ? { headers: { Authorization: "Bearer " + bob.getAccessToken() } } : {});
    assert.equal(r.status, 200, url);
    return [r, Buffer.from(await r.arrayBuffer())];
  };
  const [r1, full] = await get(bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true), true);
  assert.ok(full.equals(bytes), fmt + ": authenticated download differs");
  assert.equal(r1.headers.get("content-type"), mime);
  const [, legacy] = await get(bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, false), false);
  assert.ok(legacy.equals(bytes), fmt + ": legacy download differs");
  const noauth = await fetch(bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true));
  assert.equal(noauth.status, 401);
  const [rt, thumb] = await get(bob.mxcUrlToHttp(mxc, 96, 96, "scale", false, true, true), true);
  const [tw, th] = imageSize(thumb) ?? [];
  assert.ok(rt.headers.get("content-type").startsWith("image/"), rt.headers.get("content-type"));
  assert.ok(tw <= 640 / 2 && th <= 480 / 2 && Math.abs(tw / th - 640 / 480) < 0.1, `scale thumb ${tw}x${th}`);
  const [, crop] = await get(bob.mxcUrlToHttp(mxc, 96, 96, "crop", false, true, true), true);
  const [cw, ch] = imageSize(crop) ?? [];
  assert.ok(cw === ch && cw >= 96 && cw < 640, `crop thumb ${cw}x${ch}`);
}
log("media ok");

alice.stopClient(); bob.stopClient();
log("OK");
process.exit(0);
