"""The command line of a study: the shared flags and checks, exit statuses, and the guard.

Every problem a flag can have is found here (and in each study's own
``command`` module, which adds its flags), before any data is read, and
reported by argparse with status 2 naming the flag. A command then runs
under :func:`guarded`, which turns every expected failure into one line and
an exit status (:data:`EXIT_TABLE`); :func:`start_command` and
:func:`run_command` cover what happens before and around it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import signal
import sys
import warnings
import math
from pathlib import Path
from types import SimpleNamespace

from .settings import is_zoom_range

__all__ = ["EXIT", "EXIT_TABLE", "build_parser", "parse", "guarded", "positive_int", "number_list",
           "check_network_size", "MAX_WEIGHTS", "MAX_SEED", "start_command", "run_command",
           "printable"]

#: The exit statuses of every study command, and what each means.
EXIT = SimpleNamespace(DONE=0, PREDICT_UNREADABLE=1, BAD_INPUT=2, DIVERGED=3, FOLDER_IN_USE=4,
                       CANNOT_WRITE=5, INTERRUPTED=130, STDOUT_CLOSED=141, TERMINATED=143)
EXIT_TABLE = """exit status:
  0    done
  1    some --predict image could not be read or classified (the others were)
  2    bad arguments, or data that cannot be used as it is (missing, damaged)
  3    training diverged (a seed's weights stopped being finite): no result for it
  4    the output folder is in use by another run
  5    the output cannot be written (read-only, full disk, not a folder)
  130  interrupted (Ctrl-C): a checkpoint was written, --resume goes on
  141  the standard output was closed (e.g. piped into head): stopped quietly
  143  terminated (SIGTERM): a checkpoint was written, --resume goes on"""

#: The largest --seed: seeds reach scikit-learn's splitters (which take 0 .. 2**32 - 1)
#: with an offset of 1000 per class.
MAX_SEED = 2**31 - 1


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show '(default: ...)' only where there is a default worth showing."""

    def _get_help_string(self, action):
        text = action.help
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite_positive(text):
    """argparse type: a finite number > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def number_list(text):
    """'32,64,128' -> (32, 64, 128) (argparse type of --filters)."""
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"every block needs at least one filter, got {text!r}")
    return numbers


def zoom_range(text):
    """'0.67,1.5' -> (0.67, 1.5) (argparse type of --zoom): 0 < low <= 1 <= high."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got {text!r}") from None
    if not is_zoom_range(low, high):
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= 1 <= HIGH, got {text!r}")
    return low, high


def build_parser(prog, description, defaults, examples, data_help):
    """The shared flags; the study adds its own groups to the returned parser."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=f"examples:\n{examples}\n{EXIT_TABLE}",
                                     formatter_class=HelpFormatter)
    where = parser.add_argument_group("data and outputs")
    where.add_argument("--data", metavar="DIR", default=None, help=data_help)
    where.add_argument("--out", metavar="DIR", default=defaults.out,
                       help="output folder: seed<S>/ sub-folders, results.json, summary.txt")
    where.add_argument("--cache-dir", metavar="DIR", default=None,
                       help="where decoded images are cached; default $NUMCNN_CACHE or "
                            "~/.cache/numcnn")
    where.add_argument("--max-per-class", metavar="K", type=positive_int, default=None,
                       help="use at most K images per class of each split (quick runs, tests)")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", metavar="N", type=positive_int, default=defaults.epochs,
                       help="epochs in all")
    train.add_argument("--batch-size", metavar="N", type=positive_int, default=defaults.batch_size,
                       help="training batch size")
    train.add_argument("--lr", metavar="LR", type=finite_positive, default=defaults.lr,
                       help="initial learning rate (cosine schedule down to lr/100)")
    train.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                       help="'balanced' weighs class k by N / (K * count_k) in the loss")
    train.add_argument("--colour-jitter", metavar="S", type=float, default=defaults.colour_jitter,
                       help="training batches: per-channel gain in [1-S, 1+S] and shift in "
                            "[-S/2, S/2] (0: none)")
    train.add_argument("--augment", choices=("standard", "lab", "lab+camera"),
                       default=defaults.augment,
                       help="training batches: 'standard', random crops, flips and quarter "
                            "turns; 'lab', first also each image's stains, light and scale "
                            "changed at random, as another laboratory's slides would differ; "
                            "'lab+camera', then also blur, sensor noise and a JPEG round trip "
                            "(docs/twolabs.md)")
    train.add_argument("--zoom", metavar="LOW,HIGH", type=zoom_range, default=defaults.zoom,
                       help="--augment lab: each image zoomed about its centre by a factor "
                            "drawn uniformly in [LOW, HIGH]")
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", metavar="N", type=positive_int, default=1,
                       help="train seeds 0..N-1 and report mean and std over them")
    seeds.add_argument("--seed", metavar="S", type=int, default=None, help="train only seed S")
    train.add_argument("--resume", action="store_true",
                       help="continue each seed from <out>/seed<S>/checkpoint.npz; a seed whose "
                            "model.npz is complete is only re-evaluated")
    train.add_argument("--skip-test", action="store_true",
                       help="do not evaluate TEST (timing runs, recipe work: keeps TEST unseen)")
    train.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                       help="kernels: numba (fast) or the readable NumPy reference")

    predict = parser.add_argument_group("prediction (no training)")
    predict.add_argument("--predict", metavar="IMAGE", nargs="+", default=None,
                         help="print class probabilities for these images, using --model")
    predict.add_argument("--model", metavar="PATH", default=None,
                         help="model for --predict; its folder must hold mean_image.npy and "
                              "recipe.json (default <out>/seed0/model.npz)")
    predict.add_argument("--allow-other-size", action="store_true",
                         help="--predict: warn about, instead of refusing, images whose size "
                              "differs from the training images")

    show = parser.add_argument_group("display")
    show.add_argument("--no-plots", action="store_true", help="do not draw PNG figures")
    show.add_argument("--quiet", action="store_true",
                      help="no progress bars, no tables: only the results")
    return parser


#: A network this large (weights) is refused before any data is read.
MAX_WEIGHTS = 100_000_000


def check_network_size(parser, weights, flag="--filters"):
    """``parser.error`` if a network would have more than :data:`MAX_WEIGHTS` weights."""
    if weights > MAX_WEIGHTS:
        parser.error(f"{flag}: the network would have {weights:,} weights "
                     f"({weights * 16 / 2**30:.1f} GiB with AdamW's state), more than "
                     f"{MAX_WEIGHTS:,}; choose fewer filters")


def parse(parser, settings_class, argv, check):
    """Parse ``argv``; return ``(settings, actions)``. ``check(parser, args)`` may call parser.error.

    ``actions`` holds what is not a setting: ``predict``, ``model``,
    ``allow_other_size``, ``tta_explicit`` and the study's own actions.
    """
    args = parser.parse_args(argv)
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be between 0 and {MAX_SEED}, got {args.seed}")
    if args.seeds - 1 > MAX_SEED:
        parser.error(f"--seeds must be at most {MAX_SEED + 1}, got {args.seeds}")
    if args.batch_size < 2:
        parser.error(f"--batch-size must be at least 2: BatchNorm normalises each training "
                     f"batch by its own mean and variance, which one image does not have; "
                     f"got {args.batch_size}")
    if not 0 <= args.colour_jitter < 1:
        parser.error(f"--colour-jitter must be in [0, 1), got {args.colour_jitter}")
    if args.zoom != settings_class.zoom and args.augment == "standard":
        parser.error("--zoom changes the zoom of --augment lab (or lab+camera); with "
                     "--augment standard nothing is zoomed")
    args.tta_explicit = getattr(args, "tta", None) is not None
    check(parser, args)
    names = {f.name for f in dataclasses.fields(settings_class)}
    settings = settings_class(**{key: value for key, value in vars(args).items() if key in names})
    actions = SimpleNamespace(**{key: value for key, value in vars(args).items()
                                 if key not in names})
    return settings, actions


class Terminated(BaseException):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt."""


def _terminate(signum, frame):
    raise Terminated()


#: What Ctrl-C and SIGTERM say during a training run.
TRAINING_STOPPED = ("\ninterrupted: the last complete checkpoint is kept; --resume goes on from there",
                    "terminated: the last complete checkpoint is kept; --resume goes on from there")
#: What they say during a command that only reads (--predict, --explain, transfer.py).
COMMAND_STOPPED = ("\ninterrupted: stopped; nothing half-written is left behind",
                   "terminated: stopped; nothing half-written is left behind")


def guarded(function, settings, *arguments, outputs=(), stopped=TRAINING_STOPPED):
    """``function(settings, *arguments)``, expected failures turned into a message and a status.

    The statuses are :data:`EXIT_TABLE`'s. Bad data or settings against a run
    on disk: 2; another run in the folder: 4; an output that cannot be
    written (read-only, full, not a folder): 5, and the atomic writer has left
    nothing behind; Ctrl-C and SIGTERM: 130 and 143, with the last complete
    checkpoint on disk for ``--resume`` (the epoch under way is dropped); a
    closed standard output (``| head``): 141, quietly. Anything else is a bug
    and keeps its traceback.

    ``outputs`` are folders written besides ``settings.out`` (--explain's
    model folder); ``stopped`` the two messages of Ctrl-C and SIGTERM.
    """
    from numcnn.errors import DataError, DivergenceWarning

    from .runs import FolderInUse
    from .settings import SettingsError
    written = [Path(folder).resolve() for folder in (settings.out, *outputs)]
    previous = signal.signal(signal.SIGTERM, _terminate)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is not signal.SIG_IGN:      # (a job started with Ctrl-C ignored keeps it so)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)   # the study says it in its words
            return function(settings, *arguments)
    except (DataError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT.BAD_INPUT
    except FolderInUse as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT.FOLDER_IN_USE
    except BrokenPipeError:
        return _stdout_closed()
    except OSError as error:
        named = error.filename is not None and any(_inside(Path(str(error.filename)), folder)
                                                   for folder in written)
        if not named and (error.filename is not None or error.errno not in _NO_ROOM):
            print(f"error: {error}", file=sys.stderr)        # e.g. data that cannot be read
            return EXIT.BAD_INPUT
        where = error.filename if named else settings.out      # a full disk: only writes fail so
        print(f"error: cannot write the output {where}: {error.strerror or error}"
              f"\n(nothing half-written is left behind; free some space or choose another "
              + ("--out, then --resume)" if stopped is TRAINING_STOPPED else "place)"),
              file=sys.stderr)
        return EXIT.CANNOT_WRITE
    except KeyboardInterrupt:
        print(stopped[0], file=sys.stderr)
        return EXIT.INTERRUPTED
    except Terminated:
        print(stopped[1], file=sys.stderr)
        return EXIT.TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


#: Errors only a write can meet: a full disk, a full quota, a read-only file system.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _inside(path, folder):
    path = path.resolve()
    return path == folder or folder in path.parents


def _stdout_closed():
    """The reader of the standard output went away (``| head``): stop quietly, status 141.

    As Python's documentation advises, the standard output is pointed at
    os.devnull, so that the final flush at exit does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):   # no file descriptor (e.g. captured)
        pass
    return EXIT.STDOUT_CLOSED


def _interrupted_early(signum, frame):
    print("\ninterrupted before the run began: nothing was written", file=sys.stderr,
          flush=True)
    os._exit(EXIT.INTERRUPTED)       # not an exception: it could land inside a module's import


def start_command():
    """What a study script does first when run as a program, before it loads numcnn.

    Ctrl-C while the modules load or the flags are parsed gives one line and
    status 130 at once (``os._exit``: nothing has been written yet, and an
    exception raised there could land inside an extension module's import,
    which then fails with a traceback of its own); :func:`guarded` takes
    Ctrl-C over while the command runs. File names that are not UTF-8 (Linux allows any bytes) are printed
    on the standard output as the bytes they are, as ``ls`` does, instead of
    failing with UnicodeEncodeError.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:    # (as Python does)
        signal.signal(signal.SIGINT, _interrupted_early)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")


def run_command(main, **arguments):
    """``main(**arguments)``'s exit status, for ``sys.exit``; what escapes the guard is mapped too.

    A closed standard output found only at the last flush (``--predict ... |
    head -1``): 141, quietly; while argparse prints ``--help`` or a usage
    error, its own status (0 or 2: argparse ignores a closed output); Ctrl-C
    outside the guard: 130 with one line.
    """
    try:
        status = main(**arguments)
        sys.stdout.flush()
        return status
    except SystemExit:          # argparse after --help or a bad flag: it ignores a closed output
        try:                    # itself, and keeps its status (0 or 2): so do we
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_closed()
        raise
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT.INTERRUPTED


def printable(text):
    """``text`` with the bytes of a file name that are not UTF-8 shown as U+FFFD (for figures)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
