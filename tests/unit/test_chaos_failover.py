"""The chaos benchmark's failover clock: from a worker kill to the next attempt's first text."""

from bench.chaos import AttemptStart, Kill, Reply, failover_times


def stream(request_id: str, chunks: list[tuple[float, str, int]]) -> Reply:
    return Reply(stream=True, started=0.0, status=200, request_id=request_id, chunks=chunks)


def test_a_worker_restarted_under_its_own_name_that_takes_the_request_back_counts_as_the_failover() -> None:
    reply = stream("r1", [(1.0, "llm-1", 5), (2.0, "llm-1", 10), (3.5, "llm-1", 15), (9.0, "llm-2", 20)])
    attempts = {"r1": [AttemptStart(1, "llm-1", 0), AttemptStart(2, "llm-1", 10)]}
    [(seconds, kill, previous, rid)] = failover_times([reply], [Kill("worker", 2.5, "llm-1")], attempts)
    assert (round(seconds, 3), kill.worker, previous, rid) == (1.0, "llm-1", None, "r1")


def test_a_stream_whose_worker_had_already_finished_it_has_no_failover() -> None:
    reply = stream("r1", [(1.0, "llm-1", 5), (2.0, "llm-1", 10)])
    attempts = {"r1": [AttemptStart(1, "llm-1", 0)]}
    assert failover_times([reply], [Kill("worker", 2.5, "llm-1")], attempts) == []


def test_only_streams_of_the_killed_worker_are_timed_and_the_fault_before_is_named() -> None:
    mine = stream("r1", [(1.0, "llm-1", 4), (4.0, "llm-2", 8)])
    other = stream("r2", [(1.0, "llm-2", 4), (3.0, "llm-3", 8)])
    attempts = {
        "r1": [AttemptStart(1, "llm-1", 0), AttemptStart(2, "llm-2", 4)],
        "r2": [AttemptStart(1, "llm-2", 0), AttemptStart(2, "llm-3", 4)],
    }
    kills = [Kill("scheduler", 1.5), Kill("worker", 2.0, "llm-1")]
    [(seconds, _, previous, rid)] = failover_times([mine, other], kills, attempts)
    assert (seconds, previous and previous.kind, rid) == (2.0, "scheduler", "r1")
