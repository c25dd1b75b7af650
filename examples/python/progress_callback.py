"""Progress to a callback instead of terminal bars (a notebook widget, a log,
a web UI): each event is a dict with an "event" key.

    python examples/python/progress_callback.py acme/tiny-bert
"""

import sys

import mdl

done = {}


def on_event(event: dict) -> None:
    kind = event["event"]
    if kind == "download_started":
        done[event["id"]] = event["resumed_from"]
        print(f"fetching {event['label']} ({event['size']} bytes)")
    elif kind == "download_progress":
        done[event["id"]] += event["bytes"]
    elif kind == "download_finished":
        print(f"{'done' if event['ok'] else 'FAILED'}: {event['label']} ({done.pop(event['id'], 0)} bytes)")
    elif kind == "warning":
        print(f"warning: {event['message']}")


path, info = mdl.ensure_model_available(sys.argv[1] if len(sys.argv) > 1 else "mdl-demo/tiny-net", progress=on_event)
print(path, info.verification_status)
