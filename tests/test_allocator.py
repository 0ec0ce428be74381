import subprocess
import sys

from streammat._allocator import tune_allocator


def test_tuning_applies_on_linux_and_respects_the_environment():
    code = "from streammat._allocator import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")
    env_out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={"MALLOC_ARENA_MAX": "4"}
    )
    assert env_out.stdout.strip() == "False"


def test_tuning_twice_gives_the_same_answer():
    assert tune_allocator() == tune_allocator()
