import gc

from chat.gc_tuning import gc_settle


def test_settling_freezes_the_heap_and_collects_the_young_generation_less_often(collector_restored: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc_settle()
    # What is frozen is out of every collection's walk: nearly the whole heap, here.
    assert gc.get_freeze_count() > 0.9 * len(gc.get_objects())
    assert gc.get_threshold() == (10_000, 10, 10)
