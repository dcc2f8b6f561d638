"""
matrix-nio (Debian's python3-matrix-nio) against a running mxstack: it uses
the r0 paths and access tokens in the query string, as older clients still
do.  Two users: register, login, create a public room with an alias, invite,
join by alias, live sync, paginate back page by page, topic, typing, read
markers, presence, redaction, media upload/download, display name.
Usage: python3 nio_chat.py BASE_URL
"""
import asyncio
import sys
import time
import uuid

from nio import (AsyncClient, DownloadResponse, JoinResponse, LoginResponse, PresenceGetResponse,
                 RegisterResponse, RoomCreateResponse, RoomGetStateEventResponse,
                 RoomMessagesResponse, RoomPutStateResponse, RoomReadMarkersResponse,
                 RoomRedactResponse, RoomResolveAliasResponse, RoomSendResponse,
                 RoomTypingResponse, SyncResponse, UploadResponse)
from nio.api import RoomPreset, RoomVisibility, MessageDirection


async def new_user(base):
    name = "nio" + uuid.uuid4().hex[:8]
    c = AsyncClient(base, name)
    r = await c.register(name, "pw-" + name)
    assert isinstance(r, RegisterResponse), r
    await c.close()
    c = AsyncClient(base, name)
    r = await c.login("pw-" + name, device_name="nio test")
    assert isinstance(r, LoginResponse), r
    return c


async def sync_until(client, pred, what, timeout=10.0):
    """Incremental syncs (long-poll) until PRED(response) holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = await client.sync(timeout=2000, since=client.next_batch)
        assert isinstance(s, SyncResponse), s
        if pred(s):
            return s
    raise AssertionError("timeout: " + what)


def bodies(s, room_id):
    room = s.rooms.join.get(room_id)
    return [getattr(e, "body", None) for e in room.timeline.events] if room else []


async def main(base):
    alice = await new_user(base)
    bob = await new_user(base)
    alias = "nio" + uuid.uuid4().hex[:6]
    r = await alice.room_create(name="nio room", alias=alias, visibility=RoomVisibility.public,
                                preset=RoomPreset.public_chat, invite=[bob.user_id])
    assert isinstance(r, RoomCreateResponse), r
    room_id = r.room_id
    await alice.sync(timeout=0)
    s = await bob.sync(timeout=5000)
    assert isinstance(s, SyncResponse), s
    assert room_id in s.rooms.invite, s.rooms.invite
    full_alias = "#%s:%s" % (alias, alice.user_id.split(":", 1)[1])
    ra = await bob.room_resolve_alias(full_alias)
    assert isinstance(ra, RoomResolveAliasResponse) and ra.room_id == room_id, ra
    j = await bob.join(full_alias)
    assert isinstance(j, JoinResponse) and j.room_id == room_id, j
    await sync_until(alice, lambda s: room_id in s.rooms.join and any(
        getattr(e, "membership", None) == "join" and e.state_key == bob.user_id
        for e in s.rooms.join[room_id].timeline.events), "alice sees bob join")

    # live sync: bob's long-poll wakes for alice's message
    await bob.sync(timeout=0, since=bob.next_batch)
    poll = asyncio.ensure_future(bob.sync(timeout=10000, since=bob.next_batch))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
    assert isinstance(r, RoomSendResponse), r
    first_id = r.event_id
    s = await poll
    assert time.monotonic() - t0 < 2.0, "long-poll did not wake"
    assert "hello from nio" in bodies(s, room_id), bodies(s, room_id)

    # paginate back page by page, newest first, no duplicates or gaps
    for i in range(15):
        r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "n%d" % i})
        assert isinstance(r, RoomSendResponse), r
    s = await sync_until(bob, lambda s: "n14" in bodies(s, room_id), "bob gets n14")
    seen, token = [], s.next_batch
    for _ in range(10):
        m = await bob.room_messages(room_id, start=token, limit=4)
        assert isinstance(m, RoomMessagesResponse), m
        seen += [getattr(e, "body", None) for e in m.chunk if getattr(e, "body", None)]
        if not m.chunk or "hello from nio" in seen:
            break
        token = m.end
    want = ["n%d" % i for i in range(14, -1, -1)] + ["hello from nio"]
    assert seen[:16] == want, seen

    # state: topic round trip
    r = await alice.room_put_state(room_id, "m.room.topic", {"topic": "nio topic"})
    assert isinstance(r, RoomPutStateResponse), r
    g = await bob.room_get_state_event(room_id, "m.room.topic")
    assert isinstance(g, RoomGetStateEventResponse) and g.content["topic"] == "nio topic", g

    # typing and read markers show up in alice's sync (ephemeral / account data)
    await alice.sync(timeout=0, since=alice.next_batch)
    r = await bob.room_typing(room_id, True, 10000)
    assert isinstance(r, RoomTypingResponse), r
    await sync_until(alice, lambda s: room_id in s.rooms.join and any(
        bob.user_id in getattr(e, "users", []) for e in s.rooms.join[room_id].ephemeral),
        "alice sees bob typing")
    r = await bob.room_read_markers(room_id, first_id, first_id)
    assert isinstance(r, RoomReadMarkersResponse), r
    await sync_until(alice, lambda s: room_id in s.rooms.join and any(
        type(e).__name__ == "ReceiptEvent" and any(rc.event_id == first_id and rc.user_id == bob.user_id
                                                   for rc in e.receipts)
        for e in s.rooms.join[room_id].ephemeral), "alice sees bob's receipt")

    # presence
    await bob.set_presence("unavailable", "away from nio")
    p = await alice.get_presence(bob.user_id)
    assert isinstance(p, PresenceGetResponse) and p.presence == "unavailable", p
    assert p.status_msg == "away from nio", p

    # redaction strips the content
    r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "oops"})
    rd = await alice.room_redact(room_id, r.event_id, reason="typo")
    assert isinstance(rd, RoomRedactResponse), rd
    m = await bob.room_messages(room_id, start=(await bob.sync(timeout=0, since=bob.next_batch)).next_batch,
                                limit=5)
    red = [e for e in m.chunk if e.event_id == r.event_id]
    assert red and type(red[0]).__name__ == "RedactedEvent", m.chunk

    # media: legacy r0 upload + download
    data = b"nio media bytes " * 100
    up, _ = await alice.upload(lambda *_: data, content_type="text/plain", filename="n.txt",
                               filesize=len(data))
    assert isinstance(up, UploadResponse), up
    dl = await bob.download(up.content_uri)
    assert isinstance(dl, DownloadResponse), dl
    assert dl.body == data

    # profile
    await alice.set_displayname("Nio Alice")
    p = await bob.get_displayname(alice.user_id)
    assert p.displayname == "Nio Alice", p
    await alice.close()
    await bob.close()
    print("[nio] OK")


asyncio.run(main(sys.argv[1]))
