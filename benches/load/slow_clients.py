#!/usr/bin/env python3
"""Hostile clients for benches/load/hostile.sh: IDLE connections that never send a byte and
TRICKLE clients that send a request header one byte per second (slowloris). Whenever the
server closes one, it is opened again, so the pressure stays constant for the whole run.
Prints one JSON line of counts when it ends (after --seconds, or SIGTERM)."""

import argparse
import asyncio
import json
import signal

counts = {"opened": 0, "closed_by_server": 0, "refused": 0, "open_now": 0, "open_max": 0}


async def client(host, port, trickle, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["opened"] += 1
        counts["open_now"] += 1
        counts["open_max"] = max(counts["open_max"], counts["open_now"])
        try:
            if trickle:
                writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                await writer.drain()
            while not stop.is_set():
                if trickle:
                    writer.write(b"a")
                    await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    counts["closed_by_server"] += 1
                    break
        except OSError:
            counts["closed_by_server"] += 1
        finally:
            counts["open_now"] -= 1
            writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--trickle", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    a = p.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(client(a.host, a.port, False, stop)) for _ in range(a.idle)]
    tasks += [asyncio.create_task(client(a.host, a.port, True, stop)) for _ in range(a.trickle)]
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.seconds)
    except asyncio.TimeoutError:
        stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


asyncio.run(main())
