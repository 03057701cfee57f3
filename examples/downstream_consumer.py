#!/usr/bin/env python3
"""A downstream service of ScoreStream: reads `gamification-results`, drops repeats by
`result_id`, and keeps a view per customer (points, scores, badges, tier, missions, streaks).

    pip install confluent-kafka
    python3 examples/downstream_consumer.py --bootstrap localhost:9092
    python3 examples/downstream_consumer.py --idle-exit 10 > view.json   # batch: stop when idle

Why repeats happen: with `processing_guarantee = "at_least_once"` an instance that crashes
after producing results but before committing its input offsets re-processes those inputs
after the restart, and publishes the same results again, with the same `result_id`
(docs/outputs.md). Such repeats follow the original closely in the topic, so remembering the
last `--remember` ids is enough here. Summing `points` of `points_awarded` without this
would count them twice; `total` (the customer's running total) is safe either way.

This example keeps its view in memory, so it rebuilds it from the start of the topic every
time it starts and never commits offsets. A real service stores the view, the result ids it
applied and the offsets together (one database transaction) and resumes from there; the
repeats then hit the stored ids (for example a unique index on `result_id`).

On exit (Ctrl-C, or `--idle-exit` seconds without a record) it prints the view as JSON:
{"records": N, "duplicates_dropped": D, "customers": {"<customer_id>": {...}}}.
"""

import argparse
import json
import os
import signal
import sys
import time
import uuid
from collections import OrderedDict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException

# Results that describe a customer; `leaderboard_updated` is about a board (keyed by it).
CUSTOMER_TYPES = {
    "points_awarded", "score_updated", "mission_progress", "mission_completed",
    "badge_awarded", "streak_updated", "tier_changed",
}


class RecentIds:
    """The last `capacity` result ids seen: membership test and insert in O(1)."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.ids = OrderedDict()

    def seen(self, result_id):
        """True if `result_id` was seen before; remembers it otherwise."""
        if result_id in self.ids:
            self.ids.move_to_end(result_id)
            return True
        self.ids[result_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)
        return False


def new_customer():
    return {
        "points_earned": {},   # point type -> sum of `points` (needs the deduplication)
        "points_total": {},    # point type -> the latest published running `total`
        "scores": {},          # score id -> value (0..100)
        "badges": {},          # badge id -> level
        "tier": None,
        "missions_completed": {},  # mission id -> completions
        "mission_progress": {},    # mission id -> [progress, target]
        "streaks": {},         # streak id -> current length
        "last_event_at": None,
    }


def apply(view, result):
    """Folds one result into the customer view `view` (a dict of customer id -> dict)."""
    kind = result.get("type")
    if kind not in CUSTOMER_TYPES:
        return
    c = view.setdefault(result["customer_id"], new_customer())
    at = result.get("occurred_at")
    if at and (c["last_event_at"] is None or at > c["last_event_at"]):
        c["last_event_at"] = at
    if kind == "points_awarded":
        t = result["point_type"]
        c["points_earned"][t] = c["points_earned"].get(t, 0) + result["points"]
        c["points_total"][t] = result["total"]
    elif kind == "score_updated":
        c["scores"][result["score"]] = result["value"]
    elif kind == "badge_awarded":
        c["badges"][result["badge"]] = max(result["level"], c["badges"].get(result["badge"], 0))
    elif kind == "tier_changed":
        c["tier"] = result["to"]
    elif kind == "mission_completed":
        c["missions_completed"][result["mission"]] = result["completions"]
        c["mission_progress"].pop(result["mission"], None)
    elif kind == "mission_progress":
        c["mission_progress"][result["mission"]] = [result["progress"], result["target"]]
    elif kind == "streak_updated":
        c["streaks"][result["streak"]] = result["current"]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--topic", default="gamification-results")
    p.add_argument("--group", default=f"downstream-example-{uuid.uuid4().hex[:8]}",
                   help="consumer group (default: a fresh one; offsets are never committed)")
    p.add_argument("--remember", type=int, default=1_000_000,
                   help="how many recent result ids to remember for dropping repeats")
    p.add_argument("--idle-exit", type=float, default=0,
                   help="stop after this many seconds without a record (0: run until Ctrl-C)")
    p.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka property (SASL, TLS), repeatable")
    args = p.parse_args(argv)

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    for kv in args.property:
        key, _, value = kv.partition("=")
        conf[key] = value
    consumer = Consumer(conf)

    # Idle time counts from the assignment: joining the group may take a while.
    last_record = [None]

    def from_the_beginning(c, partitions):
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING
        c.assign(partitions)
        last_record[0] = time.monotonic()

    consumer.subscribe([args.topic], on_assign=from_the_beginning)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    recent = RecentIds(args.remember)
    view, records, duplicates, malformed = {}, 0, 0, 0
    try:
        while not stop:
            msg = consumer.poll(0.5)
            if msg is None:
                idle = last_record[0] is not None and time.monotonic() - last_record[0]
                if args.idle_exit and idle and idle > args.idle_exit:
                    break
                continue
            if msg.error():
                raise KafkaException(msg.error())
            last_record[0] = time.monotonic()
            records += 1
            try:
                result = json.loads(msg.value())
                result_id = result["result_id"]
            except (TypeError, ValueError, KeyError):
                malformed += 1
                continue
            if recent.seen(result_id):
                duplicates += 1
                continue
            apply(view, result)
    finally:
        consumer.close()
    json.dump({"records": records, "duplicates_dropped": duplicates, "malformed": malformed,
               "customers": view}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
