"""An unmodified official EventStoreDB client (Python `esdbclient`) against
Tongban's endpoint: append, read a stream and $all, subscribe, and a
wrong-expected-version error. Usage: official_python_client.py URI"""

import json
import sys
import uuid

from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import WrongCurrentVersion


def main(uri: str) -> None:
    client = EventStoreDBClient(uri=uri)
    stream = f"order-{uuid.uuid4().hex}"
    events = [
        NewEvent(type="OrderPlaced", data=json.dumps({"n": n}).encode())
        for n in range(3)
    ]
    position = client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=events
    )
    print(f"appended 3 events, commit position {position}")

    recorded = client.get_stream(stream)
    assert [json.loads(e.data)["n"] for e in recorded] == [0, 1, 2], recorded
    assert [e.id for e in recorded] == [e.id for e in events], "ids kept"
    print("read the stream back")

    in_all = [e for e in client.read_all() if e.stream_name == stream]
    assert len(in_all) == 3, in_all
    print("found the events in $all")

    subscription = client.subscribe_to_all()
    seen = []
    for event in subscription:
        if event.stream_name == stream:
            seen.append(json.loads(event.data)["n"])
        if len(seen) == 3:
            break
    subscription.stop()
    assert seen == [0, 1, 2], seen
    print("subscribed to $all and received the events")

    stream_subscription = client.subscribe_to_stream(stream, stream_position=1)
    for event in stream_subscription:
        assert json.loads(event.data)["n"] == 2, event
        break
    stream_subscription.stop()
    print("subscribed to the stream from a revision")

    try:
        client.append_to_stream(
            stream,
            current_version=StreamState.NO_STREAM,
            events=[NewEvent(type="OrderPlaced", data=b'{"n": 9}')],
        )
    except WrongCurrentVersion as error:
        print(f"wrong expected version, as expected: {error}")
    else:
        raise AssertionError("appending with NO_STREAM to an existing stream succeeded")

    client.close()
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
