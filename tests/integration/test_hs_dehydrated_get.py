"""
Dehydrated devices, the current MSC3814 paging that matrix-js-sdk 43 uses
(found by tests/clients/js_e2ee.mjs): GET .../dehydrated_device/{id}/events
with `?from=`, reading does not consume, and `next_batch` is absent on the
last page (the SDK pages until it is).  The helpers are test_hs_e2ee's.
"""
from test_hs_e2ee import C, DH


def test_dehydrated_events_get_paging(server):
    a, b = C(server), C(server)
    d = C(server, a.u)
    d.dev = "DEHYDRATEDG"
    body = {"device_id": d.dev, "device_data": {"algorithm": "x", "account": "y"},
            "device_keys": d.device_keys()}
    r = server.api("PUT", DH, a.tok, body)
    assert r.status_code == 200, r.text
    for i in range(105):   # more than one page of 100
        b.ok("PUT", f"/sendToDevice/m.test/g{i}", {"messages": {a.id: {d.dev: {"n": i}}}})
    r = server.api("GET", f"{DH}/{d.dev}/events", a.tok)
    assert r.status_code == 200, r.text
    p1 = r.json()
    assert [e["content"]["n"] for e in p1["events"]] == list(range(100))
    assert "next_batch" in p1
    r = server.api("GET", f"{DH}/{d.dev}/events?from={p1['next_batch']}", a.tok)
    p2 = r.json()
    assert [e["content"]["n"] for e in p2["events"]] == list(range(100, 105))
    assert "next_batch" not in p2
    # reading did not consume: a restarted rehydration sees everything again
    r = server.api("GET", f"{DH}/{d.dev}/events", a.tok)
    assert len(r.json()["events"]) == 100
    # only the owner's dehydrated device, and a bad token is a clean error
    assert server.api("GET", f"{DH}/{a.dev}/events", a.tok).status_code == 403
    assert server.api("GET", f"{DH}/{d.dev}/events", b.tok).status_code == 403
    r = server.api("GET", f"{DH}/{d.dev}/events?from=xyz", a.tok)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
