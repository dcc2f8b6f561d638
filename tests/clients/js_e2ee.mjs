// End-to-end encryption through matrix-js-sdk's Rust crypto against a
// running mxstack: alice and bob exchange messages in an encrypted room and
// both decrypt them; alice bootstraps cross-signing (UIA with her password),
// secret storage and key backup; her second device (alice2) logs in, sees
// the new device reach bob's device list, gets the cross-signing secrets and
// the backup key from secret storage, restores the room keys from the backup
// and decrypts alice's earlier message; new messages flow both ways with
// alice2.  Usage: node js_e2ee.mjs BASE_URL
import * as sdk from "matrix-js-sdk";
import { CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import assert from "node:assert/strict";
import { mkLog, rnd, register, login, until, synced, membership } from "./common.mjs";

const base = process.argv[2];
const log = mkLog("e2ee");

// Secret storage key cache, per user: what an app keeps after asking the user.
function ssssCallbacks(cache) {
  return {
    getSecretStorageKey: async ({ keys }) => {
      for (const id of Object.keys(keys)) if (cache.has(id)) return [id, cache.get(id)];
      return null;
    },
    cacheSecretStorageKey: (keyId, _info, key) => { cache.set(keyId, key); },
  };
}

async function cryptoClient(c) {
  await c.initRustCrypto({ useIndexedDB: false });
  return c;
}

// Wait until CLIENT's copy of event ID in ROOM is decrypted to BODY.
async function decrypted(client, roomId, eventId, body, what, ms = 15000) {
  const ev = await until(() => client.getRoom(roomId)?.findEventById(eventId), what + " (event)", ms);
  try {
    await until(() => !ev.isDecryptionFailure() && ev.getClearContent()?.body === body, what, ms);
  } catch (e) {
    throw new Error(`${e.message}: ${ev.decryptionFailureReason ?? "not decrypted"}`);
  }
  assert.equal(ev.getWireType(), "m.room.encrypted");
  assert.equal(ev.getType(), "m.room.message");
  return ev;
}

const aliceName = "alice" + rnd();
const aliceKeys = new Map();
const alice = await cryptoClient(await register(base, aliceName, { cryptoCallbacks: ssssCallbacks(aliceKeys) }));
const bob = await cryptoClient(await register(base, "bob" + rnd()));
await synced(alice);
await synced(bob);
log("both synced with rust crypto");

// ---- cross-signing, secret storage and key backup for alice
const aliceCrypto = alice.getCrypto();
let uiaCalls = 0;
await aliceCrypto.bootstrapCrossSigning({
  authUploadDeviceSigningKeys: async (makeRequest) => {
    uiaCalls++;
    await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: aliceName },
                        password: "pw-" + aliceName });
  },
});
assert.ok(await aliceCrypto.isCrossSigningReady(), "cross-signing ready");
await aliceCrypto.bootstrapSecretStorage({
  createSecretStorageKey: () => aliceCrypto.createRecoveryKeyFromPassphrase(),
  setupNewSecretStorage: true,
  setupNewKeyBackup: true,
});
assert.ok(await aliceCrypto.isSecretStorageReady(), "secret storage ready");
const backupVersion = await until(() => aliceCrypto.getActiveSessionBackupVersion(), "backup active");
const backupInfo = await aliceCrypto.getKeyBackupInfo();
assert.equal(backupInfo.version, backupVersion);
assert.equal(backupInfo.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");
assert.ok((await aliceCrypto.isKeyBackupTrusted(backupInfo)).trusted, "backup trusted");
const own = await aliceCrypto.getDeviceVerificationStatus(alice.getUserId(), alice.getDeviceId());
assert.ok(own.crossSigningVerified, "alice's device is cross-signed");
log("cross-signing + secret storage + key backup", backupVersion, "(UIA calls:", uiaCalls + ")");

// dehydrated device (MSC3814): alice's client uploads one that receives room keys while she is away
assert.ok(await aliceCrypto.isDehydrationSupported(), "dehydration supported");
await aliceCrypto.startDehydration({ createNewKey: true, rehydrate: false });
const dehydrated = await alice.http.authedRequest(sdk.Method.Get, "/dehydrated_device", undefined, undefined,
  { prefix: "/_matrix/client/unstable/org.matrix.msc3814.v1" });
assert.ok(dehydrated.device_id && dehydrated.device_data, JSON.stringify(dehydrated));
log("dehydrated device", dehydrated.device_id);

// ---- encrypted room, both sides decrypt
const { room_id: roomId } = await alice.createRoom({
  name: "e2ee", preset: "private_chat", invite: [bob.getUserId()],
  initial_state: [{ type: "m.room.encryption", state_key: "",
                    content: { algorithm: "m.megolm.v1.aes-sha2" } }],
});
await membership(bob, roomId, "invite");
await bob.joinRoom(roomId);
await until(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join", "alice sees bob join");
assert.ok(await aliceCrypto.isEncryptionEnabledInRoom(roomId));
await until(() => bob.getCrypto().isEncryptionEnabledInRoom(roomId), "bob: room encrypted");
log("encrypted room", roomId);

const m1 = await alice.sendTextMessage(roomId, "secret from alice");
const ev1 = await decrypted(bob, roomId, m1.event_id, "secret from alice", "bob decrypts alice's message");
assert.equal(ev1.getSender(), alice.getUserId());
// the server only ever saw ciphertext
const raw = await bob.fetchRoomEvent(roomId, m1.event_id);
assert.equal(raw.type, "m.room.encrypted");
assert.equal(raw.content.algorithm, "m.megolm.v1.aes-sha2");
assert.ok(!JSON.stringify(raw).includes("secret from alice"));
const m2 = await bob.sendTextMessage(roomId, "secret from bob");
await decrypted(alice, roomId, m2.event_id, "secret from bob", "alice decrypts bob's reply");
log("both decrypted");

// alice's client backs the session up to the server
const countBackedUp = async () => {
  const r = await alice.http.authedRequest(sdk.Method.Get, "/room_keys/keys", { version: backupVersion });
  return Object.keys(r.rooms?.[roomId]?.sessions ?? {}).length;
};
await until(async () => (await countBackedUp()) >= 1, "alice's room key in backup", 20000, 200);
log("room keys backed up");

// ---- alice's second device
const alice2Keys = new Map(aliceKeys); // alice types her recovery key on the new device
const alice2 = await cryptoClient(await login(base, aliceName, alice.getUserId(),
                                             { cryptoCallbacks: ssssCallbacks(alice2Keys) }));
assert.notEqual(alice2.getDeviceId(), alice.getDeviceId());
await synced(alice2);
log("alice2 logged in:", alice2.getDeviceId());

// bob learns about the new device through device_lists.changed + /keys/query
await until(async () => {
  const map = await bob.getCrypto().getUserDeviceInfo([alice.getUserId()]);
  return map.get(alice.getUserId())?.has(alice2.getDeviceId());
}, "bob sees alice2 in alice's device list", 15000, 200);
log("device list change reached bob");

// alice2 gets the cross-signing keys from secret storage and signs itself
const a2Crypto = alice2.getCrypto();
// (as Element does, first make sure the device knows its user's public identity)
assert.ok(await a2Crypto.userHasCrossSigningKeys(alice.getUserId(), true), "alice2 sees alice's identity");
await a2Crypto.bootstrapCrossSigning({});
assert.ok(await a2Crypto.isCrossSigningReady(), "alice2 cross-signing ready");
await until(async () => (await a2Crypto.getDeviceVerificationStatus(alice.getUserId(), alice2.getDeviceId()))
  ?.crossSigningVerified, "alice2 cross-signed");
// the first device sees its new sibling as verified (signature uploaded + queried)
await until(async () => (await aliceCrypto.getDeviceVerificationStatus(alice.getUserId(), alice2.getDeviceId()))
  ?.crossSigningVerified, "alice sees alice2 verified", 15000, 200);
log("alice2 cross-signed");

// restore the earlier room keys from the backup and decrypt the old message
await a2Crypto.loadSessionBackupPrivateKeyFromSecretStorage();
const check = await a2Crypto.checkKeyBackupAndEnable();
assert.ok(check && check.backupInfo.version === backupVersion, "alice2 found the backup");
const restored = await a2Crypto.restoreKeyBackup();
assert.ok(restored.imported >= 1, JSON.stringify(restored));
await membership(alice2, roomId, "join");
if (!alice2.getRoom(roomId).findEventById(m1.event_id)) {
  const tl = alice2.getRoom(roomId).getLiveTimeline();
  await until(async () => { await alice2.paginateEventTimeline(tl, { backwards: true, limit: 30 });
                            return alice2.getRoom(roomId).findEventById(m1.event_id); }, "alice2 paginates to m1");
}
await decrypted(alice2, roomId, m1.event_id, "secret from alice", "alice2 decrypts the old message");
log("alice2 decrypted the earlier message from backup:", restored.imported, "keys");

// new traffic includes the new device: bob -> alice2 and alice2 -> bob
const m3 = await bob.sendTextMessage(roomId, "hello both alices");
await decrypted(alice2, roomId, m3.event_id, "hello both alices", "alice2 decrypts bob's new message");
await decrypted(alice, roomId, m3.event_id, "hello both alices", "alice decrypts bob's new message");
const m4 = await alice2.sendTextMessage(roomId, "from alice2");
await decrypted(bob, roomId, m4.event_id, "from alice2", "bob decrypts alice2");
await decrypted(alice, roomId, m4.event_id, "from alice2", "alice decrypts alice2");
log("new device in the conversation");

// bob adds a device and logs it out again: alice's client follows both changes
const bob2 = await cryptoClient(await login(base, bob.getUserId().slice(1).split(":")[0], bob.getUserId()));
await synced(bob2);
const aliceSeesBob2 = async () => (await aliceCrypto.getUserDeviceInfo([bob.getUserId()]))
  .get(bob.getUserId())?.has(bob2.getDeviceId());
await until(aliceSeesBob2, "alice sees bob2", 15000, 200);
bob2.stopClient();
await bob2.logout(true);
await until(async () => !(await aliceSeesBob2()), "bob2 gone from alice's view", 15000, 200);
log("device removal reached alice");

// a third device of alice rehydrates the dehydrated device: the room keys it
// received as to-device messages decrypt bob's earlier message (no backup used)
const alice3 = await cryptoClient(await login(base, aliceName, alice.getUserId(),
                                             { cryptoCallbacks: ssssCallbacks(new Map(aliceKeys)) }));
await synced(alice3);
const a3Crypto = alice3.getCrypto();
assert.ok(await a3Crypto.userHasCrossSigningKeys(alice.getUserId(), true), "alice3 sees alice's identity");
await a3Crypto.bootstrapCrossSigning({});
let rehydratedKeys = 0, rehydrationError = null;
alice3.on(CryptoEvent.RehydrationProgress, (roomKeys) => { rehydratedKeys += roomKeys; });
alice3.on(CryptoEvent.RehydrationError, (msg) => { rehydrationError = msg; });
await a3Crypto.startDehydration({});
assert.equal(rehydrationError, null);
assert.ok(rehydratedKeys >= 1, "rehydrated room keys: " + rehydratedKeys);
await membership(alice3, roomId, "join");
if (!alice3.getRoom(roomId).findEventById(m2.event_id)) {
  const tl = alice3.getRoom(roomId).getLiveTimeline();
  await until(async () => { await alice3.paginateEventTimeline(tl, { backwards: true, limit: 30 });
                            return alice3.getRoom(roomId).findEventById(m2.event_id); }, "alice3 paginates to m2");
}
await decrypted(alice3, roomId, m2.event_id, "secret from bob", "alice3 decrypts with rehydrated keys");
log("alice3 rehydrated", rehydratedKeys, "room keys and decrypted bob's earlier message");

for (const c of [alice, alice2, alice3, bob]) c.stopClient();
log("OK");
process.exit(0);
