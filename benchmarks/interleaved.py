"""A training epoch, inference and conv1 of the blood-cell recipe: numcnn against PyTorch, interleaved.

    python benchmarks/interleaved.py [--images N] [--repeats R] [--predict-images M]
                                     [--predict-repeats R] [--conv1-repeats R]
                                     [--conv1-calls K] [--seed S] [--no-torch]

Prints one JSON object on stdout (seconds); progress goes to stderr.

The data: ``N`` synthetic images of the real shape (3 x 72 x 72 float32,
uniform pixels, mean image subtracted) with labels 0..3
(``bloodnet.synthetic_images``); one epoch of training batches computed ONCE
from a fixed seed as ``fit`` makes them: a random order, batches of 64 (the
last one smaller), each augmented by the recipe's
``crop_and_flip(64, rotate90=True)`` (``bloodnet.augmented_batches``). Each
worker computes them from the same seeds and reports a hash of their bytes;
the hashes must agree.

Two worker processes, started by this script and kept alive for the whole
run, one per framework (this same file with ``--worker``):

- numcnn (numba backend): the blood-cell network of examples/bloodcells.py,
  ``AdamW(1e-3, weight_decay=1e-4)``, ``SoftmaxCrossEntropy``.
  ``steps``: ``model.train_step(xb, yb)`` over the precomputed batches (the
  like-for-like timing); ``fit``: ``model.fit(x, y, batch_size=64, epochs=1
  more, verbose=0, shuffle=True, augment=crop_and_flip(64, rotate90=True))``
  on the 72x72 images, no validation, no callbacks (fit shuffles and
  augments by itself: the difference from ``steps`` is what the loop adds).
- PyTorch (2 threads): the same network (``bloodnet.build_torch``, starting
  from the same weights), ``torch.optim.AdamW(1e-3, weight_decay=1e-4)``,
  ``cross_entropy``; ``steps``: zero_grad, forward, loss, backward, step,
  ``loss.item()`` over the same precomputed batches.
- ``predict``: ``model.predict(x, batch_size=256)`` on M images 3 x 64 x 64
  (one view) against PyTorch in eval mode under ``torch.no_grad()``, 256
  images a batch, softmax included, from a fresh (untrained) copy of the
  network on both sides; the driver checks that both give the same
  probabilities on the first batch.
- ``conv1``: the network's first convolution (64 x 3 x H x W -> 32, 3x3,
  padding 1) at both benchmark inputs (64x64, 60x80), forward pass and
  weight gradient as training runs them: numcnn's ``conv2d_direct`` then
  ``conv2d_direct_backward(..., input_grad=False)``, PyTorch's ``F.conv2d``
  and its backward with ``x.requires_grad=False``, on the same arrays. Each
  round, each worker times K calls of the pair at each input and reports the
  median call.

Why two processes, and why interleaved: each framework runs alone in its
process, as a user's training would (no PyTorch OpenMP pool or allocator in
numcnn's process, no numba thread pool in PyTorch's; the malloc setting of
``--keep-freed-memory`` applies to each, and neither inherits the other's
heap). The worker that is not measuring waits on a pipe and uses no CPU. The
driver alternates them, round after round: numcnn ``steps``, PyTorch
``steps``, numcnn ``fit``, then the next round; for inference and conv1
numcnn, then PyTorch. A change of the machine's load during the run then hits both
frameworks alike, and the medians over rounds compare like with like.

Before the first round each worker warms up, untimed: two training steps
(kernels compiled or loaded, optimizer state allocated; also on the smaller
last batch), one prediction and one conv1 pair at each input. Every epoch
trains on: the weights keep changing from epoch to epoch, as in training.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FRAMEWORKS = ("numcnn", "torch")
#: The test compares the eval-mode probabilities of the first images of both workers.
CHECK_IMAGES = 64


def log(message):
    print(f"interleaved.py: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------
def predict_images(M, seed):
    """M images (M, 3, 64, 64) float32, as a centred evaluation view would give (one view)."""
    import numpy as np
    from bloodnet import RECIPE_SIZE
    rng = np.random.default_rng(seed)
    return rng.random((M, 3, RECIPE_SIZE, RECIPE_SIZE), dtype=np.float32) - np.float32(0.5)


def conv1_arrays(H, W):
    """conv1's input, weights, bias and output gradient at H x W: the same in both workers."""
    import numpy as np
    from bloodnet import BATCH, CHANNELS, KERNEL, random_array
    C, F = CHANNELS[0], CHANNELS[1]
    return (random_array((BATCH, C, H, W), seed=1),
            random_array((F, C, KERNEL, KERNEL), seed=2) * np.float32(0.2),
            random_array((F,), seed=3) * np.float32(0.1),
            random_array((BATCH, F, H, W), seed=4))


def conv1_round(worker):
    """A worker's conv1 task: the median call of its pair at each input (seconds)."""
    from bloodnet import median_seconds
    return {"seconds": {size: median_seconds(pair, worker.conv1_calls)
                        for size, pair in worker.conv1_pairs.items()}}


def max_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class NumcnnWorker:
    def __init__(self, args):
        import numpy as np
        import bloodnet
        import numcnn
        from numcnn.data import crop_and_flip
        if numcnn.set_backend("numba") != "numba":
            raise SystemExit("interleaved.py: the numba backend is not available")
        self.np = np
        self.x, self.y = bloodnet.synthetic_images(args.images, seed=args.seed)
        self.batches = bloodnet.augmented_batches(self.x, self.y, seed=args.seed + 1)
        self.augment = crop_and_flip(bloodnet.RECIPE_SIZE, rotate90=True)
        self.batch = bloodnet.BATCH
        size = bloodnet.RECIPE_SIZE
        self.model = bloodnet.build_numcnn(size, size, seed=args.seed, optimizer="adamw")
        self.xp = predict_images(args.predict_images, args.seed + 2)
        self.predictor = bloodnet.build_numcnn(size, size, seed=args.seed)
        if args.unfused:                      # the layers one by one: the plan's baseline
            from numcnn.plan import build_plan
            for model in (self.model, self.predictor):
                model.plan = (lambda m: lambda: build_plan(m.layers, fuse=False))(model)
        self.info = {"framework": "numcnn", "backend": numcnn.get_backend(),
                     "freed_memory_kept": bloodnet.FREED_MEMORY_KEPT,
                     "plan": (self.model.plan().describe().splitlines()
                              if hasattr(self.model, "plan") else ["layer by layer (no plan)"]),
                     "batches_digest": bloodnet.digest(a for b in self.batches for a in b),
                     "predict_digest": bloodnet.digest([self.xp])}
        # warm-up, untimed: kernels, optimizer state, the smaller last batch, one prediction
        for xb, yb in (self.batches[0], self.batches[-1]):
            self.model.train_step(xb, yb)
        self.check = self.predictor.predict(self.xp[:CHECK_IMAGES]).tolist()
        self.predictor.predict(self.xp)
        from numcnn.backend import kernels
        k = kernels()
        self.conv1_calls = args.conv1_calls
        self.conv1_pairs = {}
        for H, W in bloodnet.CONV_INPUTS:
            x, Wt, b, dy = conv1_arrays(H, W)
            self.conv1_pairs[f"{H}x{W}"] = (
                lambda x=x, Wt=Wt, b=b, dy=dy: (k.conv2d_direct(x, Wt, b, 1, 1),
                                                k.conv2d_direct_backward(dy, x, Wt, 1, 1,
                                                                         input_grad=False)))
        for pair in self.conv1_pairs.values():
            pair()

    conv1 = conv1_round

    def steps(self):
        losses = []
        began = time.perf_counter()
        for xb, yb in self.batches:
            loss, _ = self.model.train_step(xb, yb)
            losses.append(loss)
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "loss": float(self.np.mean(losses)),
                "nonfinite_steps": int(sum(not self.np.isfinite(v) for v in losses))}

    def fit(self):
        model = self.model
        began = time.perf_counter()
        history = model.fit(self.x, self.y, batch_size=self.batch,
                            epochs=model.epoch + 1, initial_epoch=model.epoch, verbose=0,
                            shuffle=True, augment=self.augment)
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "loss": float(history.history["loss"][-1]),
                "diverged": bool(history.diverged)}

    def predict(self):
        began = time.perf_counter()
        probabilities = self.predictor.predict(self.xp, batch_size=256)
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "images": len(probabilities)}


class TorchWorker:
    def __init__(self, args):
        import numpy as np
        import bloodnet
        torch = bloodnet.maybe_torch(threads=2)
        if torch is None:
            raise SystemExit("interleaved.py: PyTorch is not installed")
        self.np, self.torch = np, torch
        x, y = bloodnet.synthetic_images(args.images, seed=args.seed)
        batches = bloodnet.augmented_batches(x, y, seed=args.seed + 1)
        digest = bloodnet.digest(a for b in batches for a in b)
        del x, y                            # only the precomputed batches are needed here
        self.batches = [(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in batches]
        size = bloodnet.RECIPE_SIZE
        like = bloodnet.build_numcnn(size, size, seed=args.seed, optimizer="adamw")
        self.net = bloodnet.build_torch(torch, size, size, like=like)
        self.step = bloodnet.torch_train_step(torch, self.net, lr=bloodnet.RECIPE_LR,
                                              optimizer="adamw")
        xp = predict_images(args.predict_images, args.seed + 2)
        self.xp = torch.from_numpy(xp)
        self.predictor = bloodnet.build_torch(
            torch, size, size, like=bloodnet.build_numcnn(size, size, seed=args.seed)).eval()
        self.info = {"framework": "torch", "torch": torch.__version__,
                     "threads": torch.get_num_threads(),
                     "interop_threads": torch.get_num_interop_threads(),
                     "freed_memory_kept": bloodnet.FREED_MEMORY_KEPT,
                     "batches_digest": digest, "predict_digest": bloodnet.digest([xp])}
        for xb, yb in (self.batches[0], self.batches[-1]):   # warm-up, untimed
            self.step(xb, yb)
        self.check = self._predict(self.xp[:CHECK_IMAGES]).numpy().tolist()
        self._predict(self.xp)
        self.conv1_calls = args.conv1_calls
        self.conv1_pairs = {}
        for H, W in bloodnet.CONV_INPUTS:
            x, Wt, b, dy = (torch.from_numpy(a) for a in conv1_arrays(H, W))
            Wt.requires_grad_(True)
            b.requires_grad_(True)

            def pair(x=x, Wt=Wt, b=b, dy=dy):
                Wt.grad = b.grad = None
                torch.nn.functional.conv2d(x, Wt, b, stride=1, padding=1).backward(dy)
            self.conv1_pairs[f"{H}x{W}"] = pair
        for pair in self.conv1_pairs.values():
            pair()

    conv1 = conv1_round

    def _predict(self, x, batch_size=256):
        torch = self.torch
        with torch.no_grad():
            return torch.cat([torch.softmax(self.predictor(xb), dim=1)
                              for xb in torch.split(x, batch_size)])

    def steps(self):
        losses = []
        began = time.perf_counter()
        for xb, yb in self.batches:
            losses.append(self.step(xb, yb))
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "loss": float(self.np.mean(losses)),
                "nonfinite_steps": int(sum(not self.np.isfinite(v) for v in losses))}

    def predict(self):
        began = time.perf_counter()
        probabilities = self._predict(self.xp)
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "images": int(probabilities.shape[0])}


def worker(args):
    """Set up, say ready, then run the tasks named on stdin, one JSON line per task.

    Both workers import bloodnet, and so numcnn, before numpy: numcnn's OpenBLAS
    setting holds in PyTorch's worker too (each reports it).
    """
    import bloodnet  # noqa: F401  (first: numcnn before numpy)
    protocol = os.fdopen(os.dup(1), "w")     # replies go to the real stdout ...
    os.dup2(2, 1)                            # ... anything else printed goes to stderr
    sys.stdout = sys.stderr

    def reply(obj):
        protocol.write(json.dumps(obj) + "\n")
        protocol.flush()

    began = time.perf_counter()
    work = (NumcnnWorker if args.worker == "numcnn" else TorchWorker)(args)
    gc.collect()
    reply(dict(work.info, ready=True, setup_s=time.perf_counter() - began,
               openblas_thread_timeout=os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
               steps_per_epoch=len(work.batches),
               last_batch=int(len(work.batches[-1][1])), check=work.check))
    for line in sys.stdin:
        task = line.strip()
        if task == "quit":
            break
        if task == "rss":
            reply({"task": task, "max_rss_mib": max_rss_mib()})
            continue
        gc.collect()                         # untimed: no collection left over from setup
        result = getattr(work, task)()
        reply(dict(result, task=task))


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------
class Worker:
    """A worker process and its pipes."""

    def __init__(self, framework, args):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework,
               "--images", str(args.images), "--predict-images", str(args.predict_images),
               "--conv1-calls", str(args.conv1_calls),
               "--seed", str(args.seed)] + (["--unfused"] if args.unfused else [])
        self.framework = framework
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the {self.framework} worker stopped (exit {code}); "
                               "its error is above on stderr")
        return json.loads(line)

    def run(self, task):
        self.process.stdin.write(task + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def drive(args):
    import numpy as np   # the driver does no measuring itself
    frameworks = ["numcnn"] + (["torch"] if not args.no_torch and torch_available() else [])
    workers = {}
    try:
        log(f"starting the workers ({', '.join(frameworks)}): data, network, warm-up ...")
        for framework in frameworks:      # set up side by side (untimed)
            workers[framework] = Worker(framework, args)
        setup = {framework: workers[framework].read() for framework in frameworks}
        checks = {}
        if "torch" in setup:
            same = setup["numcnn"]["batches_digest"] == setup["torch"]["batches_digest"]
            same_pred = setup["numcnn"]["predict_digest"] == setup["torch"]["predict_digest"]
            if not (same and same_pred):
                raise RuntimeError("the two workers computed different batches: "
                                   f"{setup['numcnn']['batches_digest']} against "
                                   f"{setup['torch']['batches_digest']}")
            difference = float(np.abs(np.array(setup["numcnn"]["check"])
                                      - np.array(setup["torch"]["check"])).max())
            if difference > 1e-4:
                raise RuntimeError(f"numcnn and PyTorch predict different probabilities "
                                   f"(max |difference| {difference:.3g}): not the same network")
            checks = {"same_batches": same, "same_predict_images": same_pred,
                      "predict_max_abs_difference": difference}
        for info in setup.values():
            info.pop("check")

        epoch_order = [("numcnn", "steps")] + ([("torch", "steps")] if "torch" in workers else [])
        if not args.skip_fit:
            epoch_order.append(("numcnn", "fit"))
        epochs = {f"{framework} {task}": [] for framework, task in epoch_order}
        records = []
        for r in range(args.repeats):
            for framework, task in epoch_order:
                result = workers[framework].run(task)
                epochs[f"{framework} {task}"].append(result["seconds"])
                records.append(dict(result, framework=framework, round=r))
                log(f"epoch round {r + 1}/{args.repeats}: {framework} {task} "
                    f"{result['seconds']:.2f} s")
        predictions = {framework: [] for framework in frameworks}
        for r in range(args.predict_repeats):
            for framework in frameworks:
                result = workers[framework].run("predict")
                predictions[framework].append(result["seconds"])
                records.append(dict(result, framework=framework, round=r))
        if args.predict_repeats:
            log("inference rounds done")
        conv1 = {framework: {} for framework in frameworks}
        for r in range(args.conv1_repeats):
            for framework in frameworks:
                result = workers[framework].run("conv1")
                for size, seconds in result["seconds"].items():
                    conv1[framework].setdefault(size, []).append(seconds)
        if args.conv1_repeats:
            log("conv1 rounds done")
        rss = {framework: workers[framework].run("rss")["max_rss_mib"] for framework in frameworks}
    finally:
        for w in workers.values():
            w.close()

    return {
        "images": args.images, "batch": 64, "seed": args.seed,
        "steps_per_epoch": setup["numcnn"]["steps_per_epoch"],
        "last_batch": setup["numcnn"]["last_batch"],
        "repeats": args.repeats, "predict_images": args.predict_images,
        "predict_batch": 256, "predict_repeats": args.predict_repeats,
        "epoch_order": [f"{framework} {task}" for framework, task in epoch_order],
        "epoch_seconds": epochs, "predict_seconds": predictions,
        "conv1_repeats": args.conv1_repeats, "conv1_calls": args.conv1_calls,
        "conv1_seconds": conv1,
        "setup": setup, "checks": checks, "max_rss_mib": rss, "records": records,
        "freed_memory_kept": {framework: setup[framework]["freed_memory_kept"]
                              for framework in frameworks},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8860,
                        help="training images per epoch (default 8860, the recipe's)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved epoch rounds")
    parser.add_argument("--predict-images", type=int, default=2048)
    parser.add_argument("--predict-repeats", type=int, default=11,
                        help="interleaved inference rounds")
    parser.add_argument("--conv1-repeats", type=int, default=11,
                        help="interleaved rounds of conv1's forward pass and weight gradient")
    parser.add_argument("--conv1-calls", type=int, default=20,
                        help="timed calls per conv1 round and input (the round's median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-fit", action="store_true", help="no model.fit epochs")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--unfused", action="store_true",
                        help="numcnn runs its layers one by one (build_plan(fuse=False)): "
                             "what the plan's fused steps are measured against")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2")
    if args.conv1_calls < 1:
        parser.error("--conv1-calls must be at least 1")
    if args.worker:
        worker(args)
        return
    print(json.dumps(drive(args)))


if __name__ == "__main__":
    main()
