"""The benchmark runs end to end (no timing is asserted anywhere: figures live in the issue notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``bench/<script>`` run to its end with ``args``; it must exit 0."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_smoke_mode_prints_every_row(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = bench("run.py", "--smoke", "--skip-embedded", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    metrics = " ".join(row["metric"] for row in rows)
    for expected in ("latency p50, concurrency 1", "latency p99", "time to first token", "throughput, 1 client,",
                     "throughput, 8 clients", "throughput, 32 clients", "per streamed token, 32 unpaced",
                     "per streamed token, 10 streams at 50 tokens/s", "concurrent streams: errors",
                     "memory per in-flight stream", "concurrent slow streams: errors", "chain turn 1", "chain turn 3"):
        assert expected in metrics, expected
    assert "| metric | Parley | direct |" in done.stdout
    assert [row["parley"] for row in rows if "errors" in row["metric"]] == [0, 0]


def test_the_tenant_isolation_bench_runs_both_rounds(tmp_path) -> None:
    out = tmp_path / "tenants.json"
    done = bench("tenants.py", "--smoke", "--json", str(out), timeout=600)
    result = json.loads(out.read_text())
    assert {row["run"] for row in result["rows"]} == {"alone", "with the noisy tenant"}
    assert all(row["count"] > 0 for row in result["rows"])
    noisy = result["shared"]["noisy"]
    assert noisy.get("1,000-clause search: 400", 0) > 0 and noisy.get("input_file bomb: 400", 0) > 0
    assert "| run | what | done | p50 | p99 |" in done.stdout


def test_the_containers_bench_runs_every_row(tmp_path) -> None:
    out = tmp_path / "containers.json"
    done = bench("containers.py", "--smoke", "--json", str(out), timeout=600)
    result = json.loads(out.read_text())
    metrics = [row["metric"] for row in result["rows"]]
    assert any(m.startswith("sandbox cold start") for m in metrics) and "5 containers at once: errors" in metrics
    assert result["failures"] == []
    assert "| metric | p50 (or value) |" in done.stdout


def test_the_websocket_session_bench_runs_both_modes(tmp_path) -> None:
    out = tmp_path / "ws.json"
    bench("websocket.py", "--smoke", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(row["mode"], row["turns"]) for row in rows] == [("http", 3), ("websocket", 3)]


def test_the_stream_cpu_bench_measures_each_load_and_the_folded_answers(tmp_path) -> None:
    out = tmp_path / "streams.json"
    bench("stream_cpu.py", "--streams", "1,3", "--seconds", "1", "--tokens", "10", "--folded-tokens", "1,100",
          "--json", str(out))
    rows = json.loads(out.read_text())
    assert [row.get("streams") for row in rows] == [1, 3, 32, None, None]
    assert all(row["tokens"] > 0 and row["events_per_write"] >= 1 for row in rows[:3])
    assert [row["tokens_per_response"] for row in rows[3:]] == [1, 100]
    assert all(row["responses"] > 0 and row["cpu_us_per_response"] > 0 for row in rows[3:])


def test_the_relay_floor_bench_measures_each_bare_relay_and_parley(tmp_path) -> None:
    out = tmp_path / "floor.json"
    bench("relay_floor.py", "--streams", "3", "--seconds", "1", "--tokens", "10", "--json", str(out))
    rows = json.loads(out.read_text())
    assert [(row["server"], row["streams"]) for row in rows] == [
        (server, streams) for server in ("relay (raw)", "relay (lean)", "relay (parsed)", "relay (callbacks)",
                                         "parley")
        for streams in (3, 32)]
    assert all(row["tokens"] > 0 and row["cpu_us_per_token"] >= 0 for row in rows)
    # (3 paced streams for a second may use less than one clock tick of CPU; 32 unpaced streams use many)
    assert all(row["cpu_us_per_token"] > 0 for row in rows if row["streams"] == 32)


def test_the_stream_memory_bench_holds_the_streams_and_says_what_grew(tmp_path) -> None:
    out = tmp_path / "memory.json"
    bench("stream_memory.py", "--streams", "20", "--tokens", "4", "--breakdown", "5", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["streams"] == 20 and result["errors"] == 0 and result["peak_mib"] > 0
    assert len(result["heap"]) == 5 and all(row["where"] for row in result["heap"])
    assert any(row["where"].startswith("parley/") for row in result["heap_by_parley_line"])
    assert result["kib_per_stream_once_open"] is not None  # every stream had its first token while sampled


def test_the_stream_memory_bench_streams_unstored_when_asked(tmp_path) -> None:
    out = tmp_path / "memory.json"
    bench("stream_memory.py", "--streams", "10", "--tokens", "4", "--no-store", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["streams"] == 10 and result["errors"] == 0 and result["kib_per_stream_once_open"] is not None


def test_the_first_token_bench_asks_each_server_stored_and_not(tmp_path) -> None:
    done = bench("first_token.py", "--db", "postgres", "--rounds", "1", "--requests", "3")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0] for row in rows]
    assert names[0] == "| direct" and [name.split(", ")[-1] for name in names[1:]] == ["stored", "store: false"], \
        done.stdout
    assert all(float(row.split(" | ")[2]) > 0 for row in rows)


def test_the_folded_bench_gives_each_servers_latency_and_cpu_per_response(tmp_path) -> None:
    done = bench("first_token.py", "--folded", "--rounds", "1", "--requests", "5")
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows][0] == "| direct", done.stdout
    assert all(float(row.split(" | ")[2]) > 0 for row in rows)
    assert all(float(row.split(" | ")[4].strip(" |")) >= 0 for row in rows[1:]), done.stdout


def test_the_retrieval_scale_bench_keeps_its_database_and_the_int8_index_finds_the_exact_nearest(tmp_path) -> None:
    runs = [bench("retrieval/run.py", "scale", "--db", "sqlite", "--chunks", "1500", "--keep", str(tmp_path),
                  "--searches", "10", *options) for options in (("--search-while-indexing",),
                                                                ("--clients", "2", "--warm-up"))]
    first, again = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert first["chunks"] > 1000 and again["chunks"] == first["chunks"]
    assert first["keyword_while_indexing"]["searches"] >= 1 and first["keyword_while_indexing"]["p50_ms"] > 0
    assert again["ingest_s"] == first["ingest_s"], "the second run searched the kept database without indexing"
    assert all(again[ranker]["p50_ms"] > 0 for ranker in ("hybrid", "vector", "keyword"))
    assert again["hybrid_concurrent"]["clients"] == 2 and again["hybrid_concurrent"]["per_s"] > 0
    recall = bench("retrieval/quantized_recall.py", str(tmp_path / "bench.db"))
    assert json.loads(recall.stdout.strip().splitlines()[-1])["exact_top_10_found"] >= 0.9
