#!/usr/bin/env python3
"""bench.py: the arithmetic of tests/bench/run.sh.

  bench.py latency STARTS DB          stage-start marks + the agent's store ->
                                      key=value lines (percentiles, breakdown)
  bench.py throughput DB              first run created .. last run finished
  bench.py stalls LOG PREFIX          pauses > 100 ms between the agent's
                                      "intake: event" lines (ingest)
  bench.py report RESULTS OUT         key=value results -> JSON at OUT + table

Everything run.sh measured arrives as key=value lines; nothing is invented
here, only sorted, divided and printed.
"""
import json
import sqlite3
import sys


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil
    return sorted_values[int(rank) - 1]


def latency(starts_path, db_path):
    """Produce -> stage start, from the marks the stage wrote ('NS MODEL')."""
    produced = {}
    marks = {}
    with open(starts_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            mark_ns, model = int(parts[0]), parts[1]
            produced[model] = int(model.rsplit("-", 1)[1])
            marks[model] = mark_ns
    lat = sorted((marks[m] - produced[m]) / 1e6 for m in marks)
    out = {
        "latency_samples": len(lat),
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "latency_max_ms": lat[-1] if lat else None,
        "latency_mean_ms": sum(lat) / len(lat) if lat else None,
    }
    # Where the time goes, from the agent's own records (millisecond
    # resolution): Kafka (produce -> the agent read it), the agent (read ->
    # stage attempt recorded as started), the shell (-> `date` ran).
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    rows = db.execute(
        "SELECT e.body, e.received_at, s.started_at FROM events e"
        " JOIN runs r ON r.event_id = e.id JOIN stages s ON s.run_id = r.id"
    ).fetchall()
    kafka, agent, shell = [], [], []
    for body, received_at, started_at in rows:
        model = json.loads(body).get("drift", {}).get("model")
        if model not in marks or started_at is None:
            continue
        produce_ms = produced[model] / 1e6
        kafka.append(received_at - produce_ms)
        agent.append(started_at - received_at)
        shell.append(marks[model] / 1e6 - started_at)
    for name, values in (("kafka", kafka), ("agent", agent), ("shell", shell)):
        values.sort()
        out["latency_%s_p50_ms" % name] = percentile(values, 50)
        out["latency_%s_p99_ms" % name] = percentile(values, 99)
    for k, v in out.items():
        print("%s=%s" % (k, "" if v is None else (round(v, 3) if isinstance(v, float) else v)))


def throughput(db_path):
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    first, last, n, ok = db.execute(
        "SELECT min(created_at), max(finished_at), count(*),"
        " sum(status = 'succeeded') FROM runs"
    ).fetchone()
    print("tp_first_created_ms=%s" % first)
    print("tp_last_finished_ms=%s" % last)
    print("tp_runs_in_store=%s" % n)
    print("tp_runs_succeeded=%s" % ok)


def stalls(log_path, prefix):
    """Gaps in the agent's intake: it had nothing to do while records waited."""
    import datetime
    stamps = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if " intake: event " in line:
                ts = line.split(" ", 1)[0].replace("Z", "+00:00")
                stamps.append(datetime.datetime.fromisoformat(ts).timestamp())
    if len(stamps) < 2:
        return  # no line per event (unmatched events log at debug level only)
    gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b - a > 0.1]
    print("%s_stalls=%d" % (prefix, len(gaps)))
    print("%s_stall_ms=%d" % (prefix, round(sum(gaps) * 1000)))


def load_results(path):
    r = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                r[k] = v
    return r


def num(r, key):
    v = r.get(key, "")
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)


def rate(n, seconds):
    return n / seconds if n is not None and seconds else None


def report(results_path, out_path):
    r = load_results(results_path)
    doc = {
        "date": r.get("date"),
        "commit": r.get("commit"),
        "tree_dirty": r.get("dirty") == "1",
        "tree_diff_sha256": r.get("diff_sha256") if r.get("dirty") == "1" else None,
        "build": "Release (-DCMAKE_BUILD_TYPE=Release)",
        "scale": num(r, "scale"),
        "profiled": r.get("profiled") or None,
        "kafka_properties": r.get("kafka_props") or None,
        "state_root": r.get("state_root") or None,
        "machine": {
            "cpus": num(r, "cpus"),
            "cpu_model": r.get("cpu_model"),
            "kernel": r.get("kernel"),
            "loadavg_before": r.get("load_before"),
            "loadavg_after": r.get("load_after"),
            "pressure_before": r.get("psi_before"),
            "pressure_after": r.get("psi_after"),
            "pressure_note": "Linux PSI 'some' avg60: share of the last minute in which "
                             "some task waited for a CPU / for I/O",
            "note": r.get("note", ""),
        },
        "broker": "Apache Kafka %s, one local KRaft broker (packaging/kafka.sh)" % r.get(
            "kafka_version", "?"),
    }
    rows = []  # (figure, drover, limit, verdict)

    def pct(x):
        return "%.0f%%" % (100 * x) if x is not None else "n/a"

    def cpu(prefix, wall_s):
        """The agent's CPU seconds (user, system) and its share of the wall time."""
        user, system = num(r, prefix + "_cpu_user_ms"), num(r, prefix + "_cpu_sys_ms")
        if user is None or system is None:
            return None, ""
        d = {"user": user / 1000, "system": system / 1000,
             "busy_share_of_wall": (user + system) / 1000 / wall_s if wall_s else None}
        text = "%.1f s user + %.1f s sys" % (d["user"], d["system"])
        if d["busy_share_of_wall"] is not None:
            text += " = %s of the wall" % pct(d["busy_share_of_wall"])
        return d, text

    for kind, label in (("ce", "small CloudEvents"), ("github", "GitHub push bodies")):
        n = num(r, "ingest_%s_events" % kind)
        if n is None:
            continue
        agent_s = num(r, "ingest_%s_agent_ms" % kind)
        kcat_s = num(r, "ingest_%s_kcat_ms" % kind)
        agent_s = agent_s / 1000 if agent_s is not None else None
        kcat_s = kcat_s / 1000 if kcat_s is not None else None
        a, k = rate(n, agent_s), rate(n, kcat_s)
        ratio = a / k if a and k else None
        is_small = kind == "ce"
        recorded = num(r, "ingest_%s_recorded_ms" % kind)
        cpu_d, cpu_text = cpu("ingest_" + kind, agent_s)
        d = {
            "events": n,
            "avg_record_bytes": num(r, "ingest_%s_bytes" % kind),
            "agent_seconds": agent_s,
            "agent_events_per_s": a,
            "agent_method": "first 'intake: assigned' log line -> group's committed "
                            "offsets cover all records (OffsetFetch polled every 10 ms)",
            "agent_seconds_to_last_recorded": recorded / 1000 if recorded else None,
            "agent_cpu_seconds": cpu_d,
            "agent_intake_stalls": num(r, "ingest_%s_stalls" % kind),
            "agent_intake_stall_seconds": (num(r, "ingest_%s_stall_ms" % kind) or 0) / 1000,
            "agent_intake_stall_note": "pauses > 100 ms between consecutive events in the "
                                       "agent's log while records were waiting in Kafka",
            "agent_rss_kb_after": num(r, "ingest_%s_rss_kb" % kind),
            "kcat_seconds": kcat_s,
            "kcat_events_per_s": k,
            "kcat_method": "kcat -C -e -o beginning -q | wc -c, wall time of the "
                           "whole process",
            "ratio": ratio,
            "target_ratio": 0.5 if is_small else None,
            "target_met": (ratio is not None and ratio >= 0.5) if is_small else None,
            "events_unmatched": num(r, "ingest_%s_unmatched" % kind),
            "events_dead_lettered": num(r, "ingest_%s_dead" % kind),
        }
        doc.setdefault("ingest", {})["cloudevents" if is_small else "github_push"] = d
        verdict = pct(ratio) + (" (target >= 50%%: %s)" % ("met" if d["target_met"] else
                                                            "MISSED") if is_small else "")
        rows.append(("ingest, %s (%d x %s B)" % (label, n, d["avg_record_bytes"]),
                     "%.0f ev/s" % a if a else "n/a",
                     "kcat %.0f ev/s" % k if k else "n/a", verdict))
        if cpu_text:
            rows.append(("  agent CPU", cpu_text, "", ""))
        if num(r, "ingest_%s_stalls" % kind):
            rows.append(("  intake stalls > 100 ms", "%d, %.1f s in all" % (
                num(r, "ingest_%s_stalls" % kind), num(r, "ingest_%s_stall_ms" % kind) / 1000),
                "", ""))

    if num(r, "latency_events") is not None:
        p50, p99, mx = (num(r, "latency_p50_ms"), num(r, "latency_p99_ms"),
                        num(r, "latency_max_ms"))
        met = p50 is not None and p99 is not None and p50 <= 10 and p99 <= 50
        doc["latency"] = {
            "events": num(r, "latency_events"),
            "interval_ms": num(r, "latency_interval_ms"),
            "samples": num(r, "latency_samples"),
            "method": "producer puts CLOCK_REALTIME ns in the event (linger.ms=0, one "
                      "record at a time); the one-stage checkout:false shell stage runs "
                      "`date +%s%N` first thing",
            "p50_ms": p50, "p99_ms": p99, "max_ms": mx,
            "mean_ms": num(r, "latency_mean_ms"),
            "target_p50_ms": 10, "target_p99_ms": 50, "target_met": met,
            "breakdown_ms": {
                part: {"p50": num(r, "latency_%s_p50_ms" % part),
                       "p99": num(r, "latency_%s_p99_ms" % part)}
                for part in ("kafka", "agent", "shell")
            },
            "breakdown_note": "kafka: produce -> the agent read the record (events."
                              "received_at); agent: -> stage attempt started (stages."
                              "started_at); shell: -> `date` ran. Millisecond clocks.",
            "floor_sh_date_ms": {"p50": num(r, "floor_p50_ms"), "p99": num(r, "floor_p99_ms")},
            "floor_note": "posix_spawn of /bin/sh -e -c 'date +%s%N' -> the time it "
                          "prints, measured outside the agent on the same machine",
        }
        rows.append(("dispatch latency p50/p99/max (%d)" % num(r, "latency_events"),
                     "%.1f / %.1f / %.1f ms" % (p50, p99, mx) if mx is not None else "n/a",
                     "<= 10 / <= 50 ms",
                     "met" if met else "MISSED"))
        if num(r, "floor_p50_ms") is not None:
            rows.append(("  of which sh+date floor p50/p99", "", "%.1f / %.1f ms" % (
                num(r, "floor_p50_ms"), num(r, "floor_p99_ms")), "(not the agent)"))

    if num(r, "tp_runs") is not None:
        n = num(r, "tp_runs")
        span = num(r, "tp_last_finished_ms") - num(r, "tp_first_created_ms") \
            if num(r, "tp_last_finished_ms") is not None else None
        a = rate(n, span / 1000 if span else None)
        b = num(r, "spawn_true_per_s")
        bsh = num(r, "spawn_sh_true_per_s")
        ratio = a / b if a and b else None
        met = ratio is not None and ratio >= 0.5
        cpu_d, cpu_text = cpu("tp", span / 1000 if span else None)
        doc["throughput"] = {
            "runs": n,
            "runs_succeeded": num(r, "tp_runs_succeeded"),
            "max_parallel": num(r, "tp_max_parallel"),
            "agent_seconds": span / 1000 if span else None,
            "agent_runs_per_s": a,
            "agent_method": "first run created_at -> last run finished_at in the agent's "
                            "store, after /metrics drover_runs_finished_total reached N",
            "agent_cpu_seconds": cpu_d,
            "agent_cpu_note": "since the agent started (2 s idle before the events)",
            "spawn_true_per_s": b,
            "spawn_sh_true_per_s": bsh,
            "spawn_method": "posix_spawn + waitpid(-1), 32 children at a time "
                            "(benchtool spawn); /bin/true, and /bin/sh -e -c true which is "
                            "what the shell plugin runs",
            "ratio": ratio, "ratio_vs_sh_true": a / bsh if a and bsh else None,
            "target_ratio": 0.5, "target_met": met,
        }
        rows.append(("throughput, 1-stage runs (%d, max_parallel %s)" % (
            n, r.get("tp_max_parallel")),
            "%.0f runs/s" % a if a else "n/a",
            "spawn /bin/true x32 %.0f/s" % b if b else "n/a",
            "%s (target >= 50%%: %s)" % (pct(ratio), "met" if met else "MISSED")))
        if bsh:
            rows.append(("", "", "spawn sh -c true x32 %.0f/s" % bsh,
                         pct(a / bsh if a else None)))
        if cpu_text:
            rows.append(("  agent CPU", cpu_text, "", ""))

    if num(r, "rss_idle_kb") is not None:
        idle, after, peak = num(r, "rss_idle_kb"), num(r, "rss_after_kb"), num(r, "hwm_after_kb")
        doc["memory"] = {
            "rss_idle_kb": idle, "rss_after_runs_kb": after, "peak_rss_kb": peak,
            "after_runs": num(r, "tp_runs"),
            "target_idle_kb": 16 * 1024, "target_after_kb": 48 * 1024,
            "idle_met": idle <= 16 * 1024,
            "after_met": after is not None and after <= 48 * 1024,
            "method": "VmRSS / VmHWM of /proc/<agent>/status; idle = 2 s after its "
                      "partitions were assigned, external broker",
        }
        rows.append(("RSS idle after start", "%.1f MB" % (idle / 1024), "<= 16 MB",
                     "met" if doc["memory"]["idle_met"] else "MISSED"))
        if after is not None:
            rows.append(("RSS after %d runs (peak)" % num(r, "tp_runs"),
                         "%.1f MB (%.1f)" % (after / 1024, peak / 1024), "<= 48 MB",
                         "met" if doc["memory"]["after_met"] else "MISSED"))

    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    m = doc["machine"]
    print("drover benchmark %s, commit %s%s, %s CPUs (%s), load %s -> %s%s" % (
        doc["date"], doc["commit"], "+dirty" if doc["tree_dirty"] else "", m["cpus"],
        m["cpu_model"], m["loadavg_before"], m["loadavg_after"],
        ", scale 1/%s" % doc["scale"] if doc["scale"] != 1 else ""))
    print("pressure (PSI some avg60) before: %s, after: %s" % (
        m["pressure_before"], m["pressure_after"]))
    if doc["kafka_properties"]:
        print("agent kafka.properties: %s (not the defaults)" % doc["kafka_properties"])
    if doc["state_root"]:
        print("agent state (SQLite) under %s: an experiment, not the default" %
              doc["state_root"])
    if doc["profiled"]:
        print("PROFILED with %s: the agent's figures are slowed by the profiler" %
              doc["profiled"])
    widths = [max(len(row[i]) for row in rows + [("figure", "drover", "limit", "")])
              for i in range(4)]
    header = ("figure", "drover", "limit", "")
    for row in [header] + rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    print("JSON: %s" % out_path)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "latency":
        latency(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "stalls":
        stalls(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "throughput":
        throughput(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
