"""An app that pairs, greets its peer and waits for an answer: the app side
of the browser test (the demo page is the web side), and a small example.

    python3 chat_peer.py --target 127.0.0.1:3186 --uid demo --greeting hi --expect hello
"""

import argparse
import asyncio

from signalgate_client import SignalGateClient


async def chat(target: str, uid: str, greeting: str, expected: str) -> None:
    client = SignalGateClient(target)
    await client.connect()
    registered = await client.register(uid, "app")
    if not registered["peer_present"]:
        await client.expect("syncfrom", timeout=30)
    else:
        await client.expect("syncfrom")
    await client.relay("message", {"type": "chat", "text": greeting})
    print(f"sent {greeting!r}", flush=True)
    while True:
        event = await client.next_event(timeout=30)
        if event.name == "message" and event.data.get("type") == "chat":
            assert event.data["text"] == expected, event.data
            print(f"received {event.data['text']!r}", flush=True)
            break
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:3186")
    parser.add_argument("--uid", required=True)
    parser.add_argument("--greeting", default="hello from python")
    parser.add_argument("--expect", default="hello from the browser")
    arguments = parser.parse_args()
    asyncio.run(chat(arguments.target, arguments.uid, arguments.greeting, arguments.expect))


if __name__ == "__main__":
    main()
