"""`python tests/training/interrupted_train.py STEP ARGV...`: `python -m pipeline ARGV`, stopped by a
KeyboardInterrupt right after checkpoint STEP is complete (exit 130), as a crash there would stop it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.cli import main  # noqa: E402
from pipeline.training import checkpoints  # noqa: E402


def stop_after(step: int) -> None:
    save = checkpoints.save

    def save_then_stop(run, model, state):
        path = save(run, model, state)
        if state["step"] == step:
            raise KeyboardInterrupt
        return path

    checkpoints.save = save_then_stop


if __name__ == "__main__":
    stop_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
