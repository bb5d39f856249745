"""The ceiling: a trivial Litestar POST handler that decodes a small msgspec Struct and returns it.

Served by ``python -m bench.trivial_app --port N --workers W`` with exactly the Granian settings
``labrec serve`` uses (``service.cli.granian_server``).
"""

from __future__ import annotations

import argparse

import msgspec
from litestar import Litestar, post


class Echo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    value: int
    tags: list[str] = msgspec.field(default_factory=list)


@post("/echo", status_code=200)
async def echo(data: Echo) -> Echo:
    return data


def create_app() -> Litestar:
    return Litestar(route_handlers=[echo], openapi_config=None, debug=False)


def main() -> None:
    from service.cli import granian_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    granian_server(
        "bench.trivial_app:create_app", host=args.host, port=args.port, workers=args.workers
    ).serve()


if __name__ == "__main__":
    main()
