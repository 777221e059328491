"""runtime/heap.py: the start-up heap is frozen, so later full collections skip it."""

import gc

from runtime.heap import freeze_start_up_heap


def test_freezing_moves_every_live_object_out_of_the_collectors_reach():
    survivor = [object() for _ in range(1000)]  # alive at "start-up"
    try:
        frozen = freeze_start_up_heap()
        assert frozen == gc.get_freeze_count() > len(survivor)
        assert not any(obj is survivor for obj in gc.get_objects())  # frozen objects are not tracked for collection
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0 and any(obj is survivor for obj in gc.get_objects())
