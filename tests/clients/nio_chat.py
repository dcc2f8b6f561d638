"""
matrix-nio (Debian's python3-matrix-nio) against a running mxstack: it uses
the r0 paths and access tokens in the query string, as older clients still
do.  Two users: register, login, create a room, invite, join, send, sync,
paginate back, set a display name.  Usage: python3 nio_chat.py BASE_URL
"""
import asyncio
import sys
import uuid

from nio import (AsyncClient, JoinResponse, LoginResponse, RegisterResponse, RoomCreateResponse,
                 RoomMessagesResponse, RoomSendResponse, SyncResponse)


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


async def main(base):
    alice = await new_user(base)
    bob = await new_user(base)
    r = await alice.room_create(name="nio room", invite=[bob.user_id])
    assert isinstance(r, RoomCreateResponse), r
    room_id = r.room_id
    s = await bob.sync(timeout=5000)
    assert isinstance(s, SyncResponse), s
    assert room_id in s.rooms.invite, s.rooms.invite
    assert isinstance(await bob.join(room_id), JoinResponse)
    s = await alice.sync(timeout=1000)
    since = s.next_batch
    r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from nio"})
    assert isinstance(r, RoomSendResponse), r
    s = await bob.sync(timeout=5000, full_state=False)
    s = await bob.sync(timeout=5000, since=since) if room_id not in s.rooms.join else s
    bodies = [getattr(e, "body", None) for e in s.rooms.join[room_id].timeline.events]
    assert "hello from nio" in bodies, bodies
    m = await bob.room_messages(room_id, start=s.next_batch, limit=20)
    assert isinstance(m, RoomMessagesResponse), m
    assert any(getattr(e, "body", None) == "hello from nio" for e in m.chunk)
    await alice.set_displayname("Nio Alice")
    p = await bob.get_displayname(alice.user_id)
    assert p.displayname == "Nio Alice", p
    await alice.close()
    await bob.close()
    print("[nio] OK")


asyncio.run(main(sys.argv[1]))
