"""The second-thread worker of the video loop: order, back-pressure, errors, draining."""

import threading
import time

import pytest

from service.frame_worker import FrameWorker


def test_items_are_finished_in_order_on_another_thread():
    done, threads = [], set()

    def finish(i):
        time.sleep(0.001 * (i % 3))  # uneven work
        threads.add(threading.get_ident())
        done.append(i)

    with FrameWorker(finish) as worker:
        for i in range(50):
            worker.submit(i)
    assert done == list(range(50))  # all finished by close(), in order
    assert threads and threading.get_ident() not in threads


def test_main_thread_waits_when_the_worker_is_behind():
    gate = threading.Event()
    worker = FrameWorker(lambda i: gate.wait(), depth=2)
    for i in range(3):  # one being finished, two queued
        worker.submit(i)
    blocked = threading.Thread(target=worker.submit, args=(3,))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # bounded: the fourth frame waits
    gate.set()
    blocked.join(2)
    worker.close()


def test_worker_error_reaches_the_main_thread():
    def finish(i):
        if i == 3:
            raise ValueError("frame 3 is bad")

    worker = FrameWorker(finish)
    with pytest.raises(ValueError, match="frame 3"):
        for i in range(100):
            worker.submit(i)
            time.sleep(0.001)
        worker.close()
    worker.close()  # idempotent, the error was raised once
    with pytest.raises(RuntimeError, match="after close"):
        worker.submit(1)
