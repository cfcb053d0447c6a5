"""Put jobs into a tube with the blocking client.

python examples/producer.py --address 127.0.0.1:11300 --tube emails --count 100
"""

from __future__ import annotations

import argparse

from beanproto_sync import Client


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:11300", help="host:port")
    parser.add_argument("--tube", default="default")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    with Client(parse_address(args.address), encoding="utf-8", use=args.tube, timeout=10) as c:
        ids = c.put_many([f"job {i}" for i in range(args.count)], ttr=30)
    print(f"put {len(ids)} jobs into {args.tube!r}")


if __name__ == "__main__":
    main()
