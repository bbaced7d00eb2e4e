"""The Python gRPC client against a running signalgate (SIGNALGATE_TARGET):
register, pair with a WebSocket peer, relay both ways, byebye, and resume
after a dropped network."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time

import websockets

from signalgate_client import SignalGateClient, SignalGateError

TARGET = os.environ.get("SIGNALGATE_TARGET", "127.0.0.1:3186")


class WsPeer:
    """A browser-like peer on the JSON WebSocket door."""

    async def open(self):
        self.socket = await websockets.connect(f"ws://{TARGET}/ws")
        welcome = await self.next()
        assert welcome["event"] == "welcome", welcome
        return self

    async def send(self, event, data=None, request_id=None):
        frame = {"event": event}
        if data is not None:
            frame["data"] = data
        if request_id is not None:
            frame["id"] = request_id
        await self.socket.send(json.dumps(frame))

    async def next(self):
        return json.loads(await asyncio.wait_for(self.socket.recv(), 5))

    async def expect(self, name):
        event = await self.next()
        assert event["event"] == name, f"expected {name}, got {event}"
        return event.get("data")


def run(coroutine):
    asyncio.run(coroutine)


def test_register_pair_relay_both_ways_and_byebye():
    async def scenario():
        web = await WsPeer().open()
        await web.send("register", {"uid": "py-pair", "type": "web"})
        assert (await web.expect("registered"))["peerPresent"] is False

        app = SignalGateClient(TARGET)
        welcome = await app.connect()
        assert welcome["message"] == "Welcome!"
        registered = await app.register("py-pair", "app")
        assert registered["peer_present"] is True
        await app.expect("syncfrom")

        # app -> web, every relayed event
        await app.relay("syncto", {"contacts": ["Zoë"], "n": 3})
        assert await web.expect("syncto") == {"contacts": ["Zoë"], "n": 3}
        await app.relay("message", {"type": "offer", "sdp": "v=0"})
        assert await web.expect("message") == {"type": "offer", "sdp": "v=0"}
        await app.transfile(1024, "photo.jpg")
        assert await web.expect("transfile") == {"size": 1024, "name": "photo.jpg"}
        await app.ctrl_send_speed(512)
        assert await web.expect("ctrlSendSpeed") == 512

        # web -> app
        await web.send("message", {"type": "answer", "sdp": "v=0", "nested": [1, 2.5, None]})
        assert await app.expect("message") == {"type": "answer", "sdp": "v=0", "nested": [1, 2.5, None]}
        await web.send("ctrlSendSpeed", 2048)
        assert (await app.expect("ctrl_send_speed"))["bytes_received"] == "2048"

        # The app leaves cleanly: the web is told.
        await app.close()
        await web.expect("byebye")
        await web.socket.close()

    run(scenario())


def test_resume_after_a_dropped_network_loses_nothing():
    async def scenario():
        web = await WsPeer().open()
        await web.send("register", {"uid": "py-resume", "type": 0})
        await web.expect("registered")
        app = SignalGateClient(TARGET)
        await app.connect()
        await app.register("py-resume", "app")
        await app.expect("syncfrom")
        token, last_seq, session = app.resume_token, app.last_seq, app.session_id

        await app.abort()
        await web.expect("peer_away")
        for n in range(5):
            await web.send("message", {"n": n}, request_id=10 + n)
            assert (await web.next())["event"] == "ack"

        back = SignalGateClient(TARGET)
        await back.connect()
        resumed = await back.resume(token, last_seq)
        assert resumed["id"] == session and resumed["uid"] == "py-resume"
        for n in range(5):
            assert await back.expect("message") == {"n": n}
        await web.expect("peer_back")

        await back.close()
        await web.expect("byebye")
        await web.socket.close()

    run(scenario())


def test_errors_arrive_as_exceptions():
    async def scenario():
        app = SignalGateClient(TARGET)
        await app.connect()
        try:
            await app.relay("message", "too early")
        except Exception as error:  # noqa: BLE001
            assert getattr(error, "code", None) == "NOT_REGISTERED", error
        else:
            raise AssertionError("a relay before register must fail")
        await app.close()

    run(scenario())


def test_call_reports_are_acknowledged_checked_and_not_relayed():
    async def scenario():
        app = SignalGateClient(TARGET)
        await app.connect()
        try:
            await app.call_report("c-1", "failed", reason="no network")
        except SignalGateError as error:
            assert error.code == "NOT_REGISTERED", error
        else:
            raise AssertionError("a report before register must fail")
        web = await WsPeer().open()
        await web.send("register", {"uid": "py-caller", "type": "web"})
        await web.expect("registered")
        await app.register("py-caller", "app")
        await app.expect("syncfrom")
        await app.call_report("c-1", "connected", path="relay", setup_ms=950)
        await app.call_report("c-1", "closed", duration_ms=30_000)
        await web.send("callreport", {"call": "c-1", "result": "connected", "path": "host"}, 1)
        ack = await web.next()
        assert (ack["event"], ack["id"]) == ("ack", 1), ack
        for bad, field in [
            (dict(result="connected"), "path"),
            (dict(result="closed", duration_ms=-1), "durationMs"),
            (dict(result="closed", reason="hung up"), "reason"),
        ]:
            try:
                await app.call_report("c-2", **bad)
            except SignalGateError as error:
                assert error.code == "BAD_REQUEST", error
                assert error.message.startswith(field), error
            else:
                raise AssertionError(f"{bad} must be refused")
        # Nothing was relayed: the next thing the web side sees is the
        # app's message.
        await app.relay("message", "after the reports")
        assert await web.expect("message") == "after the reports"
        await app.close()
        await web.expect("byebye")

    run(scenario())


def test_ice_servers_carry_turn_credentials_that_check():
    """The gateway runs with a TURN URL, a STUN URL and a secret
    (scripts/checks/python.sh): `registered` carries the list, the
    credential is HMAC-SHA1(secret, "<expiry>:<uid>"), and `ice_servers`
    renews it."""
    secret = os.environ["SIGNALGATE_TURN_SECRET"].encode()

    def check(client, uid):
        assert client.ice_servers_expire_at > time.time() + 500, client.ice_servers_expire_at
        turn, stun = client.ice_servers
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"], turn
        assert turn["username"] == f"{client.ice_servers_expire_at}:{uid}"
        digest = hmac.new(secret, turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}

    async def scenario():
        app = SignalGateClient(TARGET)
        await app.connect()
        try:
            await app.renew_ice_servers()
            raise AssertionError("an unregistered session got ICE servers")
        except SignalGateError as error:
            assert error.code == "NOT_REGISTERED", error
        registered = await app.register("py-ice", "app")
        assert registered["ice_servers"][0]["username"].endswith(":py-ice"), registered
        check(app, "py-ice")
        app.ice_servers = []
        await app.renew_ice_servers()
        check(app, "py-ice")
        await app.close()

    run(scenario())


def test_a_draining_node_hands_the_session_to_another_node():
    """With SIGNALGATE_TARGET_B (a second node on the same Redis) and
    SIGNALGATE_DRAIN_A (an admin drain URL of the first), the client follows
    `reconnect` by itself and resumes on the other node; its peer sees
    peer_away then peer_back, never byebye."""
    target_b = os.environ.get("SIGNALGATE_TARGET_B")
    drain_a = os.environ.get("SIGNALGATE_DRAIN_A")
    if not target_b or not drain_a:
        import pytest

        pytest.skip("needs two nodes (SIGNALGATE_TARGET_B, SIGNALGATE_DRAIN_A)")

    async def scenario():
        import urllib.request

        app = SignalGateClient(TARGET, reconnect_target=target_b)
        await app.connect()
        await app.register("py-drain", "app")
        web = WsPeer()
        web.socket = await __import__("websockets").connect(f"ws://{target_b}/ws")
        assert (await web.next())["event"] == "welcome"
        await web.send("register", {"uid": "py-drain", "type": "web"})
        assert (await web.expect("registered"))["peerPresent"] is True
        await app.expect("syncfrom")
        request = urllib.request.Request(drain_a, method="POST", headers={
            "Authorization": "Bearer " + os.environ["SIGNALGATE_ADMIN_TOKEN"]})
        await asyncio.to_thread(urllib.request.urlopen, request)
        await web.expect("peer_away")
        resumed = await app.expect("resumed", timeout=10.0)
        assert resumed["id"] == app.session_id
        await web.expect("peer_back")
        await app.relay("message", {"after": "drain"}, request_id=None)
        assert await web.expect("message") == {"after": "drain"}
        await web.send("message", {"back": 1})
        assert await app.expect("message") == {"back": 1}
        await app.close()
        assert await web.expect("byebye") is None

    run(scenario())
