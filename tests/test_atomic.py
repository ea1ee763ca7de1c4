"""Writes land whole or not at all, and a killed writer's temporary does not outlive the next run."""

import pytest

from fillblank.atomic import atomic_path, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    (tmp_path / ".out.h5.tmp-4242").write_text("left by kill -9")  # a file, and a folder target's leftover
    (tmp_path / ".out.h5.tmp-4343").mkdir()
    (tmp_path / ".other.h5.tmp-4242").write_text("another target's")
    write_text(tmp_path / "out.h5", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.h5.tmp-4242", "out.h5"]
