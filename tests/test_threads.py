"""The thread plan: sane counts for any core count, and it applies to torch/OpenCV/ORT."""

from __future__ import annotations

import os

import pytest
import torch

from streammat.matting.threads import ThreadPlan, plan_threads


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 64])
def test_plan_counts(cores: int) -> None:
    plan = plan_threads(cores)
    assert plan.cores == cores
    counts = (plan.onnx_intra_op, plan.torch_threads, plan.opencv_threads)
    counts += (plan.decode_threads, plan.encode_threads)
    assert all(1 <= n <= cores for n in counts)


def test_two_cores() -> None:
    plan = plan_threads(2)
    assert plan == ThreadPlan(
        cores=2,
        onnx_intra_op=1,
        torch_threads=1,
        opencv_threads=1,
        decode_threads=2,
        encode_threads=2,
    )


def test_default_is_cpu_count() -> None:
    assert plan_threads().cores == (os.cpu_count() or 1)
    assert plan_threads(0).cores == 1


def test_apply() -> None:
    import cv2

    before_torch, before_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    try:
        plan = plan_threads(2)
        plan.apply()
        assert torch.get_num_threads() == 1
        assert cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before_torch)
        cv2.setNumThreads(before_cv2)


def test_sessions_do_not_spin() -> None:
    from streammat.matting.sessions import session_options

    opts = session_options(plan_threads(4).onnx_intra_op)
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
