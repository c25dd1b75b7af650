"""Make sure the models a script needs are on disk and verified, then use them.

    pip install mdl
    HF_ENDPOINT=http://127.0.0.1:PORT python examples/python/ensure_models.py   # against scripts/demo's emulator

Runs on the project's config.yaml ($MDL_CONFIG, else ./config.yaml), or on the
default project in the current directory when there is none.
"""

import sys

import mdl


def main() -> int:
    wanted = sys.argv[1:] or ["mdl-demo/tiny-net"]
    try:
        results = mdl.download_multiple_models(wanted)
    except mdl.Error as e:
        # Every mdl exception carries the message and what to do about it.
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    for model_id, (path, info) in results.items():
        status = "verified" if info.verified else info.verification_status
        print(f"{model_id}: {info.size_mb} MB from {info.source} at {path} ({status})")
    for name, info in mdl.list_available_models().items():
        print(f"  {name}: {len(info.files)} file(s), commit {info.commit or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
