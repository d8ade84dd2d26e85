"""ESPnet registration: ``ASRPathwaysTask``, the transducer task with language pathways.

``ASRPathwaysTask(ASRTransducerTask)`` changes four things and nothing else:

* ``--pathways`` (ESPnet's ``NestedDictAction``): the ``pathways:`` section of the YAML
  config (keys in :mod:`espnet_pathways.controller`); empty (the default) = stock dense
  training.  Overrides work as for every ESPnet dict option: ``--pathways final_sparsity=0.5``.
  Stock ESPnet ignores the extra key when it loads the saved ``config.yaml``
  (``build_model_from_file`` builds the model from the keys it knows).
* ``build_model``: the stock model, adopted in place as a
  :class:`~espnet_pathways.model.PathwayTransducerModel` (same parameters, same state-dict
  keys, same random initialisation as stock ESPnet).  The ``pathways`` section is checked
  here, before ESPnet writes anything.
* ``build_optimizers`` (called once, in training, before ``config.yaml`` is written):
  reads each training utterance's language, checks the configured languages have data,
  loads and checks ``init_masks``, and attaches a
  :class:`~espnet_pathways.controller.PathwaysController` to the model and the optimizer
  (region and guard around each step, prune/re-rank/rewind events after it, masks and
  step inside the optimizer's state dict, hence in every ``checkpoint.pth``).
* ``build_sequence_iter_factory``: training batches from
  :class:`~espnet_pathways.sampler.LanguageBatchSampler` (monolingual batches in the
  configured language order; ``batches: mixed`` keeps ESPnet's sampler for ``lap``) and
  monolingual validation batches (so every validation batch uses its language's mask and
  ``valid`` reports ``loss_<lang>``).  Batch size: ``batch_type`` ``numel`` -> a budget
  of ``batch_bins`` on count × longest (speech samples + tokens); ``length`` -> on the
  summed lengths; ``folded``/``sorted``/``unsorted`` -> ``batch_size`` utterances.  The
  factory does not shuffle (the sampler orders each epoch from ``seed`` + epoch).

Not supported with a ``pathways`` section: ``--ngpu`` > 1 without ``--multiprocessing_distributed``
(DataParallel replicas cannot share the in-place swap), DeepSpeed, ``--shuffle_within_batch``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
from espnet2.samplers.abs_sampler import AbsSampler
from espnet2.tasks.asr_transducer import ASRTransducerTask
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_pathways import lang_adapt
from espnet_pathways.controller import (
    PathwaysConfig,
    PathwaysController,
    PathwaysError,
    language_of,
    load_masks_source,
)
from espnet_pathways.model import PathwaysHooks, PathwayTransducerModel
from espnet_pathways.sampler import LanguageBatchSampler, read_lengths, read_utt2lang

# ESPnet's SequenceIterFactory only calls generate() on AbsSampler instances.
AbsSampler.register(LanguageBatchSampler)

log = logging.getLogger(__name__)


def pathways_config(args: argparse.Namespace) -> PathwaysConfig | None:
    return PathwaysConfig.from_dict(getattr(args, "pathways", None))


def _shape_lengths(shape_files: list[str]) -> dict[str, int]:
    """utt -> Σ over the shape files of the product of its shape (ESPnet's ``numel`` bins)."""
    total: dict[str, int] = {}
    for i, f in enumerate(shape_files):
        if not Path(f).is_file():
            raise PathwaysError(f"shape file: no such file {f}")
        for n, line in enumerate(Path(f).read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                numel = 1
                for d in parts[1].split(","):
                    numel *= int(d)
            except (IndexError, ValueError):
                raise PathwaysError(f"{f}:{n}: expected 'utt_id length[,dim...]', got {line!r}") from None
            if i == 0:
                total[parts[0]] = numel
            elif parts[0] in total:
                total[parts[0]] += numel
    return total


def data_languages(
    args: argparse.Namespace, cfg: PathwaysConfig | None, mode: str
) -> tuple[dict[str, str], str]:
    """(utt -> language for every utterance of ``mode``'s first shape file, where it came from).

    The table: ``pathways.utt2lang``, else ``utt2lang`` / ``utt2category`` beside the data's
    first file, else each utterance id's prefix before ``_``.
    """
    shape_files = args.train_shape_file if mode == "train" else args.valid_shape_file
    data = args.train_data_path_and_name_and_type if mode == "train" else args.valid_data_path_and_name_and_type
    if not shape_files:
        raise PathwaysError(f"--{mode}_shape_file: needed to read the {mode} utterances")
    if not Path(shape_files[0]).is_file():
        raise PathwaysError(f"--{mode}_shape_file: no such file {shape_files[0]}")
    table: dict[str, str] = {}
    source = "the utterance-id prefix"
    try:
        utts = list(read_lengths(shape_files[0]))
        if cfg is not None and cfg.utt2lang:
            if not Path(cfg.utt2lang).is_file():
                raise PathwaysError(f"pathways.utt2lang: no such file {cfg.utt2lang}")
            table, source = read_utt2lang(cfg.utt2lang), cfg.utt2lang
        elif data:
            folder = Path(data[0][0]).parent
            for name in ("utt2lang", "utt2category"):
                if (folder / name).is_file():
                    table, source = read_utt2lang(folder / name), str(folder / name)
                    break
    except PathwaysError:
        raise
    except ValueError as e:  # a malformed line, named by the reader
        raise PathwaysError(str(e)) from None
    return {u: language_of(u, table) for u in utts}, source


def check_init_param(spec: str, model: torch.nn.Module) -> None:
    """``--init_param`` ``<file>:<src_key>:<dst_key>:<excludes>`` must fit the model, as ESPnet will load it.

    ESPnet's own load fails with a multi-screen message on a shape mismatch (e.g. an SSL model
    pre-trained with another ``encoder_conf``), and loads nothing, silently, when ``src_key``
    matches no tensor.  Here both are one line naming the file and the first bad tensor.
    """
    path, src_key, dst_key, excludes = (spec.split(":", 4) + [None] * 3)[:4]
    if not Path(path).is_file():
        raise PathwaysError(f"--init_param {path}: no such file")
    try:
        src = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint
        raise PathwaysError(f"--init_param {path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(src, dict) and "module" in src:
        src = src["module"]
    if not isinstance(src, dict):
        raise PathwaysError(f"--init_param {path}: not a state dict")
    for e in (excludes or "").split(","):
        if e:
            src = {k: v for k, v in src.items() if not k.startswith(e)}
    if src_key:
        src = {k[len(src_key) + 1:]: v for k, v in src.items() if k.startswith(src_key)}
        if not src:
            raise PathwaysError(f"--init_param {spec}: {path} has no tensor under {src_key!r}")
    dst = model
    for k in (dst_key or "").split("."):
        if k:
            dst = getattr(dst, k, None)
            if dst is None:
                raise PathwaysError(f"--init_param {spec}: the model has no module {dst_key!r}")
    dst_state = dst.state_dict()
    where = f"{dst_key}." if dst_key else ""
    for k, v in src.items():
        if k not in dst_state:
            raise PathwaysError(f"--init_param {path}: {where}{k} is not in the model (configs differ)")
        if torch.is_tensor(v) and tuple(v.shape) != tuple(dst_state[k].shape):
            raise PathwaysError(f"--init_param {path}: {where}{k} has shape {tuple(v.shape)}, the model's "
                                f"{tuple(dst_state[k].shape)} (the encoder or model configs differ)")


def _adapted_languages(args: argparse.Namespace, cfg: PathwaysConfig | None, cond) -> dict[str, str]:
    """utt -> language of the training and validation data; every language must have its modules."""
    utt2lang, source = data_languages(args, cfg, "train")
    if args.valid_shape_file:
        utt2lang.update(data_languages(args, cfg, "valid")[0])
    extra = sorted(set(utt2lang.values()) - set(cond.languages))
    if extra:
        raise PathwaysError(
            f"lang_adapt_conf.languages: the data has {extra[0]!r} ({source}), which has no {cond.kind} "
            f"(languages: {', '.join(cond.languages)})"
        )
    return utt2lang


def _check_schedule_fits(ctl: PathwaysController, args: argparse.Namespace, batches_per_epoch: int) -> None:
    """The last prune event N·T must come within the run, or the target is never reached."""
    last = ctl.last_event_step
    steps = batches_per_epoch // max(1, args.accum_grad) * args.max_epoch
    if last > steps:
        cfg = ctl.config
        raise PathwaysError(
            f"pathways.prune_interval x num_rounds: the last prune event is at optimizer step {last} "
            f"(T={cfg.prune_interval}), but this run has {steps} steps ({batches_per_epoch} batches x "
            f"{args.max_epoch} epochs / accum_grad {args.accum_grad}): lower prune_interval or num_rounds, "
            "or raise --max_epoch"
        )
    log.info("pathways: last prune event at step %d of %d", last, steps)


AUTO_STEPS_SCHEDULERS = ("tristagelr",)  # schedulers whose length ESPnet takes as max_steps


def _resolve_max_steps(task: type, args: argparse.Namespace) -> None:
    """``scheduler_conf: {max_steps: auto}``: this run's optimizer steps (batches per epoch of its own
    train sampler // accum_grad x max_epoch), so that a schedule shaped over the whole run
    (``tristagelr``: warm-up, hold, decay) ends where the run ends, whatever its length.  The
    sampler is built here once more, as the train iterator will build it.  Keys of
    ``scheduler_conf`` that the scheduler does not take (e.g. a base config's ``warmup_steps``,
    merged in by ESPnet when ``--scheduler`` changes on the command line) are dropped, in the log."""
    import inspect

    from espnet2.tasks.abs_task import scheduler_classes
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.utils.build_dataclass import build_dataclass

    conf = getattr(args, "scheduler_conf", None) or {}
    if conf.get("max_steps") != "auto":
        return
    if args.scheduler not in AUTO_STEPS_SCHEDULERS:
        raise PathwaysError(f"scheduler_conf.max_steps: auto is for scheduler {', '.join(AUTO_STEPS_SCHEDULERS)}, "
                            f"not {args.scheduler}")
    takes = set(inspect.signature(scheduler_classes[args.scheduler].__init__).parameters)
    dropped = sorted(k for k in conf if k not in takes)
    batches = args.num_iters_per_epoch or len(
        task.build_iter_factory(args=args, distributed_option=build_dataclass(DistributedOption, args), mode="train").sampler)
    steps = max(1, batches // max(1, args.accum_grad) * args.max_epoch)
    args.scheduler_conf = {k: v for k, v in conf.items() if k in takes} | {"max_steps": steps}
    log.info("scheduler_conf.max_steps: auto -> %d (%d batches per epoch / accum_grad %d x %d epochs)%s",
             steps, batches, args.accum_grad, args.max_epoch,
             f"; not arguments of {args.scheduler}, dropped: {', '.join(dropped)}" if dropped else "")


class _ProcessGroupTeardown:
    """``main_worker`` that destroys the ``torch.distributed`` process group when the run ends.

    ESPnet leaves the group to the interpreter's shutdown; with gloo that can abort the
    process ("terminate called without an active exception", exit -6) after a finished run,
    when the backend's worker threads are torn down during finalisation.  Destroying the group
    while the interpreter is still alive is what PyTorch asks of every program."""

    @classmethod
    def main_worker(cls, args: argparse.Namespace) -> None:
        try:
            super().main_worker(args)
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


class StockTransducerTask(_ProcessGroupTeardown, ASRTransducerTask):
    """ESPnet's transducer task, unchanged but for ``scheduler_conf.max_steps: auto`` (resolved as
    in :class:`ASRPathwaysTask`): the plugin's dense runs (``espnet_pathways.bin.asr_transducer_train``)."""

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
        optimizers = super().build_optimizers(args, model)
        if not getattr(args, "collect_stats", False):
            _resolve_max_steps(cls, args)
        return optimizers


class ASRPathwaysTask(_ProcessGroupTeardown, ASRTransducerTask):
    """ASR transducer task with language pathways (see the module docstring)."""

    _controller: PathwaysController | None = None  # the run's controller (one per process)

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="Language pathways (espnet-pathways)")
        group.add_argument(
            "--pathways",
            action=NestedDictAction,
            default={},
            help="The pathways section: mode (imp, lth, lap, pathways, adaptive, dynamic_pathways), "
            "languages, init_masks, final_sparsity, initial_sparsity, schedule, prune_interval, "
            "num_rounds, fraction, rerank_interval, rerank_after_final, scope, rewind, rewind_to, "
            "rewind_unmasked, reset_optimizer_on_rewind, prunable, batches, policy, beta, utt2lang "
            "(see espnet_pathways.controller). Empty: dense training.",
        )
        group.add_argument(
            "--lang_adapt_conf",
            action=NestedDictAction,
            default={},
            help="Per-language encoder modules (baselines of sparse sharing): type (embedding | adapter), "
            "languages, bottleneck (adapter units, 32); see espnet_pathways.lang_adapt. Empty: none.",
        )

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> PathwayTransducerModel:
        pathways_config(args)  # fail early, before ESPnet writes anything
        model = PathwayTransducerModel.from_stock(super().build_model(args))
        conf = getattr(args, "lang_adapt_conf", None)
        if conf:
            try:
                cond = lang_adapt.attach(model, dict(conf))
            except lang_adapt.LangAdaptError as e:
                raise PathwaysError(str(e)) from None
            log.info("lang_adapt: %s for %s, %d added parameters", cond.kind, ", ".join(cond.languages),
                     cond.added_parameters())
        return model

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
        optimizers = cls._build_optimizers(args, model)
        if not getattr(args, "collect_stats", False):
            _resolve_max_steps(cls, args)  # ESPnet builds the scheduler from args.scheduler_conf right after
        return optimizers

    @classmethod
    def _build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
        if not getattr(args, "collect_stats", False) and not getattr(args, "ignore_init_mismatch", False):
            for spec in getattr(args, "init_param", None) or []:
                check_init_param(spec, model)
        optimizers = super().build_optimizers(args, model)
        cfg = pathways_config(args)
        cls._controller = None
        cond = getattr(model, "lang_adapt", None)
        if cond is not None and not getattr(args, "collect_stats", False):
            cond.utt2lang = _adapted_languages(args, cfg, cond)
        if cfg is None or getattr(args, "collect_stats", False):
            return optimizers
        if not isinstance(model, PathwaysHooks):
            raise PathwaysError(f"pathways: the model is a {type(model).__name__}, not a model of espnet_pathways")
        if args.ngpu > 1 and not getattr(args, "distributed", False):
            raise PathwaysError("--ngpu > 1 without distributed training (DataParallel) is not supported with pathways")
        if getattr(args, "use_deepspeed", False):
            raise PathwaysError("--use_deepspeed is not supported with pathways")
        if getattr(args, "shuffle_within_batch", False):
            raise PathwaysError("--shuffle_within_batch would mix languages inside batches: set it to false")
        u2l, source = data_languages(args, cfg, "train")
        present = sorted(set(u2l.values()))
        languages = cfg.languages or present
        missing = [lang for lang in languages if lang not in present]
        if missing:
            raise PathwaysError(
                f"pathways.languages: no training data for {missing[0]!r} (languages in {source}: {', '.join(present)})"
            )
        utt2lang = dict(u2l)
        if args.valid_shape_file:
            v2l, _ = data_languages(args, cfg, "valid")
            utt2lang.update(v2l)
        init_masks = load_masks_source(cfg.init_masks) if cfg.init_masks else None
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        writer = not dist or torch.distributed.get_rank() == 0
        ctl = PathwaysController(
            model, cfg, languages=languages, init_masks=init_masks, output_dir=args.output_dir,
            writer=writer, utt2lang=utt2lang, seed=args.seed,
        )
        if len(optimizers) != 1:
            raise PathwaysError(f"pathways: one optimizer expected, got {len(optimizers)}")
        ctl.install(optimizers[0])
        cls._controller = ctl
        log.info("pathways: mode %s, languages %s (from %s), %d masked tensors",
                 cfg.mode, ", ".join(languages), source, len(ctl.names))
        return optimizers

    @classmethod
    def build_sequence_iter_factory(cls, args: argparse.Namespace, iter_options: Any, mode: str) -> AbsIterFactory:
        cfg = pathways_config(args)
        ctl = cls._controller
        if cfg is None or ctl is None or mode not in ("train", "valid") or (mode == "train" and cfg.batches == "mixed"):
            factory = super().build_sequence_iter_factory(args, iter_options, mode)
            if ctl is not None and mode == "train":
                _check_schedule_fits(ctl, args, iter_options.num_iters_per_epoch or len(factory.sampler))
            return factory
        u2l, source = data_languages(args, cfg, mode)
        lengths = _shape_lengths(list(iter_options.shape_files))
        wanted = [lang for lang in ctl.languages if lang in set(u2l.values())]
        if not wanted:
            raise PathwaysError(f"--{mode}_shape_file: no utterances of {', '.join(ctl.languages)} ({source})")
        keep = {u: lang for u, lang in u2l.items() if lang in wanted}
        lengths = {u: n for u, n in lengths.items() if u in keep}
        batch_type = iter_options.batch_type
        if batch_type in ("numel", "length"):
            size = dict(batch_bins=int(iter_options.batch_bins), padding=batch_type == "numel")
        else:
            size = dict(batch_size=int(iter_options.batch_size))
        world, rank = 1, 0
        if iter_options.distributed:
            world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        try:
            sampler = LanguageBatchSampler(
                keep, lengths, policy=cfg.policy if mode == "train" else "round_robin", beta=cfg.beta,
                languages=wanted, seed=args.seed, accum_grad=args.accum_grad if mode == "train" else 1,
                world_size=world, rank=rank, **size,
            )
        except ValueError as e:
            raise PathwaysError(f"pathways ({mode} batches): {e}") from None
        logging.info(f"[{mode}] Batch sampler: {sampler}")
        if mode == "train":
            _check_schedule_fits(ctl, args, iter_options.num_iters_per_epoch or len(sampler))
        batches = sampler.batches_for_epoch(1)
        dataset = cls.build_dataset(args, iter_options, {u for b in batches for u in b})
        return SequenceIterFactory(
            dataset=dataset,
            batches=sampler,
            seed=args.seed,
            num_iters_per_epoch=iter_options.num_iters_per_epoch,
            shuffle=False,
            shuffle_within_batch=False,
            num_workers=args.num_workers,
            collate_fn=iter_options.collate_fn,
            pin_memory=args.ngpu > 0,
        )
