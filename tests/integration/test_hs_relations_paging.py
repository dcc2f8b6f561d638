"""
/relations and /threads pagination parameters (relations/rel_endpoints.c):
from/to tokens bound the page, malformed tokens get 400 M_INVALID_PARAM,
and /threads pages with from.  On both storage engines.
"""
from test_hs_relations import C, V1, q, react, thread_reply


def test_relations_from_to_and_bad_tokens(server):
    a = C(server)
    room = a.create()
    target = a.msg(room, "target")
    r1, r2, r3 = (react(a, room, target, k) for k in ("a", "b", "c"))

    page = a.relations(room, target, limit=1)
    assert page.status_code == 200, page.text
    body = page.json()
    assert [e["event_id"] for e in body["chunk"]] == [r3]
    # from the first page's end, up to (not past) a token taken before r1
    mid = a.relations(room, target, limit=10, **{"from": body["next_batch"]}).json()
    assert [e["event_id"] for e in mid["chunk"]] == [r2, r1]
    assert mid["prev_batch"] == body["next_batch"]
    fwd = a.relations(room, target, dir="f", limit=1).json()
    assert [e["event_id"] for e in fwd["chunk"]] == [r1]
    bounded = a.relations(room, target, dir="f", **{"from": fwd["next_batch"],
                                                    "to": body["next_batch"]}).json()
    assert [e["event_id"] for e in bounded["chunk"]] == [r2]

    for params in ({"from": "garbage"}, {"to": "x1"}, {"limit": "-1"}):
        r = a.relations(room, target, **params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["errcode"] == "M_INVALID_PARAM"


def test_threads_from_and_bad_token(server):
    a = C(server)
    room = a.create()
    roots = [a.msg(room, f"root {i}") for i in range(3)]
    for root in roots:
        thread_reply(a, room, root, "reply")
    seen, params = [], {"limit": "1"}
    for _ in range(5):
        body = a.ok("GET", f"/rooms/{q(room)}/threads", prefix=V1, params=params)
        seen += [e["event_id"] for e in body["chunk"]]
        if "next_batch" not in body:
            break
        params = {"limit": "1", "from": body["next_batch"]}
    assert seen == roots[::-1]
    r = a.req("GET", f"/rooms/{q(room)}/threads", prefix=V1, params={"from": "nope"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM", r.text
