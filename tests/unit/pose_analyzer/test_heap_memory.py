"""streaming.memory: glibc's arenas capped unless the operator chose, free pages trimmed (the RSS
they bound is measured on a real service in tests/e2e/test_nothing_lost_memory.py)."""

from __future__ import annotations

import platform

import pytest

from pose_analyzer.streaming import memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_arenas_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.tune_allocator() is True
    assert memory.release_free_memory() is True


def test_an_arena_limit_set_by_the_operator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.tune_allocator() is False
