"""interleaved.py end to end, tiny: the driver, its workers and the JSON it prints.

Not a measurement (one round, one call): this checks that the pipeline which
compare.py's epoch, inference and conv1 sections rest on runs and reports what
they read, with PyTorch's worker when PyTorch is installed, and that each
worker runs with numcnn's OpenBLAS setting though its environment lacks it.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_interleaved_runs_every_task_and_reports_each_round():
    with_torch = importlib.util.find_spec("torch") is not None
    cmd = [sys.executable, str(HERE / "interleaved.py"), "--images", "70", "--repeats", "1",
           "--skip-fit", "--predict-images", "64", "--predict-repeats", "1",
           "--conv1-repeats", "2", "--conv1-calls", "1"] + ([] if with_torch else ["--no-torch"])
    env = {name: value for name, value in os.environ.items()
           if name != "OPENBLAS_THREAD_TIMEOUT"}
    numcnn_sets = subprocess.run([sys.executable, "-c", "import os, numcnn; print(os.environ"
                                  ".get('OPENBLAS_THREAD_TIMEOUT'))"], env=env, text=True,
                                 capture_output=True, timeout=300, check=True).stdout.strip()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    frameworks = ["numcnn"] + (["torch"] if with_torch else [])
    assert result["steps_per_epoch"] == 2 and result["last_batch"] == 6     # 70 = 64 + 6
    assert sorted(result["predict_seconds"]) == sorted(frameworks)
    assert result["conv1_repeats"] == 2 and result["conv1_calls"] == 1
    for framework in frameworks:
        assert len(result["epoch_seconds"][f"{framework} steps"]) == 1
        rounds = result["conv1_seconds"][framework]
        assert sorted(rounds) == ["60x80", "64x64"]
        assert all(len(r) == 2 and min(r) > 0 for r in rounds.values())
    if with_torch:
        assert result["checks"]["same_batches"] and result["checks"]["same_predict_images"]
    for framework in frameworks:            # numcnn's setting, in PyTorch's worker too
        assert result["setup"][framework]["openblas_thread_timeout"] == numcnn_sets != "None"
