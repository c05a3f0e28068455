"""``rpaccel fetch-data``: download MovieLens-100k into the data cache."""

from __future__ import annotations


def run(args) -> int:
    from ...golden.data import fetch_ml100k

    print(fetch_ml100k())
    return 0


def add_parser(sub):
    s = sub.add_parser("fetch-data", help="download MovieLens-100k into the cache")
    s.set_defaults(func=run)
    return s
