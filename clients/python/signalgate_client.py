"""A signalgate client for native apps, over the gRPC door, in Python.

This is the template a Kotlin or Swift developer follows: generate stubs
from proto/ (see README.md), open one `Connect` stream per session, send
`ClientEvent`s with increasing ids, read `ServerEvent`s, remember the
resume token and the last `seq`, and resume after a network drop.

    python3 signalgate_client.py --target 127.0.0.1:3186 --uid alice --role app

prints every event it receives and sends each line you type as a chat
message to the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated"))

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402
from signalgate.v1 import signaling_pb2 as pb  # noqa: E402
from signalgate.v1 import signaling_pb2_grpc as pb_grpc  # noqa: E402

ROLES = {"web": pb.ROLE_WEB, "app": pb.ROLE_APP}
# Events whose field is a google.protobuf.Value (`notice`: pushed by the
# app's backend through the admin API).
JSON_EVENTS = {"syncto", "message", "export", "exception", "notice"}


class SignalGateError(Exception):
    """An `error` event answering one of our requests."""

    def __init__(self, code: str, message: str, request_id: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


def ice_servers_from(servers) -> list:
    """`IceServer` messages as WebRTC's RTCIceServer dicts, e.g. for
    aiortc: `RTCConfiguration([RTCIceServer(**s) for s in ice_servers])`."""
    result = []
    for server in servers:
        entry = {"urls": list(server.urls)}
        if server.username:
            entry["username"] = server.username
            entry["credential"] = server.credential
        result.append(entry)
    return result


@dataclass
class Event:
    """A server event: its name, its data as plain Python, and its seq."""

    name: str
    data: Any
    seq: int


def _value(data: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


def _plain(message) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@dataclass
class SignalGateClient:
    """One session over one `Connect` stream."""

    target: str
    token: str | None = None
    session_id: str = ""
    resume_token: str = ""
    last_seq: int = 0
    # The session's ICE servers as WebRTC's RTCIceServer dicts ({"urls",
    # "username", "credential"}) and when their TURN credentials expire
    # (unix seconds, 0 when none were minted); see ice_servers_from().
    ice_servers: list = field(default_factory=list)
    ice_servers_expire_at: int = 0
    # Where to reconnect when a draining node says `reconnect` (a rolling
    # restart); None: `target` again (a load balancer sends the stream to
    # another node).
    reconnect_target: str | None = None
    # The `reconnect` being followed: (resume token, after_ms).
    _drain: Any = None
    _skip_welcome: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _waiting: dict = field(default_factory=dict)
    _events: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def connect(self) -> dict:
        """Opens the stream; returns the `welcome` data."""
        self._open(self.target)
        welcome = await self.next_event()
        assert welcome.name == "welcome", welcome
        self.session_id = welcome.data["id"]
        self.resume_token = welcome.data.get("resume_token", "")
        return welcome.data

    def _open(self, target: str) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        stub = pb_grpc.SignalingStub(self._channel)
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        self._call = stub.Connect(metadata=metadata)
        self._reader = asyncio.create_task(self._read())

    async def _follow_drain(self) -> None:
        """The node drained: wait the `after_ms` it gave, open a stream to
        another node and resume there. The `resumed` event and the missed
        events then arrive as ordinary events."""
        token, after_ms = self._drain
        self._drain = None
        await asyncio.sleep(after_ms / 1000)
        await self._channel.close()
        self._skip_welcome = True
        self._open(self.reconnect_target or self.target)
        request_id = next(self._ids)
        answered = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answered
        await self._call.write(pb.ClientEvent(id=request_id, resume=pb.Resume(token=token, last_seq=self.last_seq)))

    async def _read(self) -> None:
        try:
            async for server_event in self._call:
                name = server_event.WhichOneof("event")
                payload = getattr(server_event, name)
                if name in JSON_EVENTS:
                    data = json_format.MessageToDict(payload)
                else:
                    data = _plain(payload)
                if server_event.seq:
                    self.last_seq = server_event.seq
                if name == "welcome" and self._skip_welcome:
                    self._skip_welcome = False
                    continue  # a stream opened to follow a `reconnect`
                if name == "resumed":
                    self.session_id = data["id"]
                    self.resume_token = data["resume_token"]
                if name == "reconnect":
                    self.resume_token = data["resume_token"]
                    self._drain = (data["resume_token"], int(data.get("after_ms", 0)))
                    continue
                if name in ("registered", "resumed", "ice_servers"):
                    self._take_ice_servers(payload)
                if name == "ack" and int(data["id"]) in self._waiting:
                    self._waiting.pop(int(data["id"])).set_result(None)
                    continue
                if name == "error" and int(data.get("id", 0)) in self._waiting:
                    error = SignalGateError(data["code"], data["message"], int(data["id"]))
                    self._waiting.pop(int(data["id"])).set_exception(error)
                    continue
                await self._events.put(Event(name, data, server_event.seq))
        except grpc.aio.AioRpcError as error:
            if self._drain is not None and error.code() == grpc.StatusCode.UNAVAILABLE:
                asyncio.create_task(self._follow_drain())
                return
            await self._events.put(Event("closed", {"code": error.code().name, "details": error.details()}, 0))
            return
        await self._events.put(Event("closed", {"code": "OK"}, 0))

    def _take_ice_servers(self, payload) -> None:
        """Keeps the list carried by `registered`, `resumed` or `ice_servers`."""
        self.ice_servers = ice_servers_from(payload.ice_servers)
        expire_at = getattr(payload, "ice_servers_expire_at", None)
        if expire_at is None:
            expire_at = payload.expire_at
        self.ice_servers_expire_at = expire_at

    async def renew_ice_servers(self) -> list:
        """Asks for a fresh ICE server list (new TURN credentials); renew
        before `ice_servers_expire_at`. Returns the list."""
        await self.request(ice_servers=pb.IceServersRequest())
        await self.expect("ice_servers")
        return self.ice_servers

    async def next_event(self, timeout: float = 5.0) -> Event:
        """The next event that is not an answer to one of our requests."""
        return await asyncio.wait_for(self._events.get(), timeout)

    async def expect(self, name: str, timeout: float = 5.0) -> Any:
        """The next event must be `name`; returns its data."""
        event = await self.next_event(timeout)
        assert event.name == name, f"expected {name}, got {event}"
        return event.data

    async def request(self, request_id: int | None = None, **event) -> None:
        """Sends one `ClientEvent` and waits for its `ack` (raises on `error`)."""
        request_id = request_id or next(self._ids)
        answered = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answered
        await self._call.write(pb.ClientEvent(id=request_id, **event))
        await asyncio.wait_for(answered, 5.0)

    async def register(self, uid: str, role: str) -> dict:
        """Registers; returns the `registered` data."""
        await self.request(register=pb.Register(uid=uid, role=ROLES[role]))
        return await self.expect("registered")

    async def relay(self, name: str, data: Any, request_id: int | None = None) -> None:
        """Relays a JSON event (`syncto`, `message`, `export`, `exception`) to the peer."""
        assert name in JSON_EVENTS, name
        await self.request(request_id, **{name: _value(data)})

    async def transfile(self, size: int, name: str) -> None:
        await self.request(transfile=pb.Transfile(size=size, name=name))

    async def ctrl_send_speed(self, bytes_received: int) -> None:
        await self.request(ctrl_send_speed=pb.CtrlSendSpeed(bytes_received=bytes_received))

    async def call_report(
        self,
        call: str,
        result: str,
        path: str = "",
        setup_ms: int | None = None,
        duration_ms: int | None = None,
        reason: str = "",
    ) -> None:
        """Says how a call attempt ended (docs/PROTOCOL.md, *Call outcomes*).

        `result` is "connected" (then `path` is required: the selected
        candidate pair's local type, "host", "srflx", "prflx" or "relay"),
        "failed" (with a `reason`) or "closed" (with `duration_ms`);
        `setup_ms` is the time from the first offer or answer. Both peers
        report the same `call` id. Raises `SignalGateError` (BAD_REQUEST
        naming the field) when a rule is broken.
        """
        report = pb.CallReport(call=call, result=result, path=path, reason=reason)
        if setup_ms is not None:
            report.setup_ms = setup_ms
        if duration_ms is not None:
            report.duration_ms = duration_ms
        await self.request(call_report=report)

    async def resume(self, token: str, last_seq: int) -> dict:
        """Takes over a dropped session on this new stream; returns `resumed`.

        The missed events follow as ordinary events.
        """
        request_id = next(self._ids)
        answered = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answered
        await self._call.write(pb.ClientEvent(id=request_id, resume=pb.Resume(token=token, last_seq=last_seq)))
        resumed = await self.expect("resumed")
        return resumed

    async def close(self) -> None:
        """Ends the session cleanly (half-close); the peer gets `byebye`."""
        await self._call.done_writing()
        try:
            await asyncio.wait_for(self._reader, 5.0)
        finally:
            await self._channel.close()

    async def abort(self) -> None:
        """Drops the connection as a lost network would (no half-close):
        the session is held for a resume."""
        await self._channel.close(grace=None)
        self._reader.cancel()


async def _interactive(arguments) -> None:
    client = SignalGateClient(arguments.target, token=arguments.token)
    welcome = await client.connect()
    print(f"welcome: session {welcome['id']}")
    registered = await client.register(arguments.uid, arguments.role)
    print(f"registered: {registered}")

    async def printer():
        while True:
            event = await client._events.get()
            print(f"<- {event.name} {event.data if event.data else ''} (seq {event.seq})")
            if event.name == "closed":
                return

    printing = asyncio.create_task(printer())
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            await client.relay("message", {"type": "chat", "text": line.rstrip("\n")})
        except SignalGateError as error:
            print(f"!! {error}")
    await client.close()
    await printing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:3186")
    parser.add_argument("--uid", required=True)
    parser.add_argument("--role", choices=["web", "app"], default="app")
    parser.add_argument("--token", default=os.environ.get("SIGNALGATE_TOKEN"))
    asyncio.run(_interactive(parser.parse_args()))


if __name__ == "__main__":
    main()
