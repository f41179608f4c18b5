"""The evaluation runner: one config in, one result file and one leaderboard row out.

For each batch of the deterministic evaluation subset it measures, on the same images:
undefended clean accuracy, SA = acc(classifier(purify(x))), the attack under the configured
threat model, undefended adversarial accuracy and the predictions on purify(x_adv). RA counts an
example only when classifier(purify(x)) and classifier(purify(x_adv)) are both correct, as
AutoAttack and RobustBench do (RA <= SA); ``acc_purified_adv`` is the accuracy on purify(x_adv)
alone (:func:`purebench.eval.results.summarise`).

A randomized defense (declared, or detected by purifying twice) is attacked with the threat's
EOT, and each adversarial example is purified ``threat.n_eval`` times with independent draws:
``ra`` is the mean accuracy over those evaluations and ``ra_worst`` counts an example as robust
only if every evaluation classifies it correctly, so one lucky draw never decides a number.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from purebench.allocator import keep_freed_memory
from purebench.attacks import ATTACKS, Attack
from purebench.classifiers import CLASSIFIERS, Classifier
from purebench.data import DATASETS, EvalDataset
from purebench.defenses import DEFENSES, Defense
from purebench.defenses.checkpoint_config import settle
from purebench.defenses.training_data import training_overlap
from purebench.errors import PurebenchError
from purebench.eval import checks
from purebench.eval.adversarial_cache import ObliviousCache
from purebench.eval.atomic_files import write_json
from purebench.eval.figures import purification_grid
from purebench.eval.loggers import log_run
from purebench.eval.progress import BatchStore
from purebench.eval.results import (
    append_row,
    check_leaderboard,
    check_writable,
    finished_row,
    load_run_file,
    summarise,
)
from purebench.eval.settings import check_settings
from purebench.eval.stages import StageProgress
from purebench.eval.threats import THREATS, ThreatModel, draws_per_call
from purebench.provenance import (
    NOT_DECISIVE,
    code_version,
    compute_version,
    evaluation_hash,
    git_commit,
    record_checkpoints,
    sha256_params,
    weights_digest,
)
from purebench.seeding import attack_draws, derive_seed, generators, per_example, seed_everything, stacked_draws

log = logging.getLogger(__name__)


def available_devices() -> str:
    """The devices this machine offers, as the ``device=`` values that name them."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return "cpu" + (f", cuda (= cuda:0) to cuda:{n - 1}" if n > 1 else ", cuda" if n else " only (no CUDA GPU)")


def sweep_job_number() -> int | None:
    """This job's number in a Hydra multirun (None outside Hydra or in a single run)."""
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.select(HydraConfig.get(), "job.num", default=None) if HydraConfig.initialized() else None


def resolve_device(name: str, job_num: int | None = None) -> torch.device:
    """``auto`` means CUDA when available, else CPU; ``cuda:job`` gives the ``job_num``-th job of a sweep
    GPU ``job_num mod count`` (a sweep over one machine's GPUs); anything else must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda:job":
        if not torch.cuda.is_available():
            raise PurebenchError(
                f"device=cuda:job spreads a sweep over GPUs, but this machine has {available_devices()}."
            )
        name = f"cuda:{(job_num or 0) % torch.cuda.device_count()}"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise PurebenchError(
            f"device='{name}' is not a device purebench can run on. Use device=auto (CUDA when available, else CPU), "
            f"device=cpu, device=cuda / cuda:N, or cuda:job (a sweep's jobs over the GPUs); this machine has "
            f"{available_devices()}."
        )
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise PurebenchError(
            f"device='{name}' is not available: this machine has {available_devices()}. Use device=auto to take a GPU "
            "only where there is one, or device=cpu."
        )
    return device


def group_params(group: DictConfig, *drop: str) -> dict[str, Any]:
    """A config group as factory keyword arguments (without its registry ``name`` and ``drop`` keys)."""
    return {k: v for k, v in OmegaConf.to_container(group, resolve=True).items() if k not in ("name", *drop)}


def select_indices(dataset: EvalDataset, n_examples: int, sample: str, seed: int) -> list[int]:
    """The evaluation subset: the first ``n_examples`` images, or a seeded random sample."""
    if n_examples <= 0:
        raise PurebenchError(f"n_examples must be a positive integer, got {n_examples}.")
    if n_examples > len(dataset):
        raise PurebenchError(
            f"n_examples={n_examples} but {dataset.name} has only {len(dataset)} images here ({dataset.source}). "
            f"Use n_examples<={len(dataset)} or point dataset.root at the full data."
        )
    if sample == "first":
        return list(range(n_examples))
    if sample == "random":
        rng = np.random.default_rng(derive_seed(seed, "sample"))
        return sorted(rng.choice(len(dataset), size=n_examples, replace=False).tolist())
    raise PurebenchError(f"dataset.sample must be 'first' or 'random', got '{sample}'.")


@dataclass
class Supplied:
    """Components handed over as objects (the Python API, :func:`purebench.api.evaluate`) instead of
    built from the config's registry names; the config's group then only names them for the row."""

    dataset: EvalDataset | None = None
    classifier: Classifier | None = None
    defense: Defense | None = None
    attack: Attack | None = None
    threat: ThreatModel | None = None


def build_components(
    cfg: DictConfig, device: torch.device, supplied: Supplied | None = None
) -> tuple[EvalDataset, Classifier, Defense, Attack, ThreatModel]:
    """Instantiate every registry entry named in ``cfg`` that was not ``supplied`` (fails early, before any compute)."""
    given = supplied or Supplied()
    dataset = given.dataset or DATASETS.build(cfg.dataset.name, **group_params(cfg.dataset, "sample"))
    if given.classifier is not None:
        classifier = given.classifier.to(device)
    else:
        classifier = CLASSIFIERS.build(cfg.classifier.name, **group_params(cfg.classifier)).to(device)
        classifier.accelerate(bool(cfg.amp), bool(cfg.channels_last), compile_backend(cfg))
    if classifier.num_classes != dataset.num_classes:
        raise PurebenchError(
            f"classifier '{classifier.name}' predicts {classifier.num_classes} classes but {dataset.name} has "
            f"{dataset.num_classes}: pick a matching classifier or set classifier.num_classes."
        )
    defense = given.defense or DEFENSES.build(cfg.defense.name, classifier=classifier, **group_params(cfg.defense))
    attack = given.attack or ATTACKS.build(cfg.attack.name, seed=int(cfg.seed), **group_params(cfg.attack))
    threat = given.threat or THREATS.build(cfg.threat.name, **group_params(cfg.threat))
    return dataset, classifier, defense.to(device), attack, threat


def attacker_copy(
    cfg: DictConfig,
    classifier: Classifier,
    defense: Defense,
    threat: ThreatModel,
    supplied: Supplied | None,
    device: torch.device,
) -> Defense:
    """The defense the attacker differentiates: the real one, or under ``threat.surrogate`` (Lee & Kim 2023)
    a copy built with those settings, e.g. a shorter diffusion chain; the evaluation keeps the real one."""
    if not threat.surrogate:
        return defense
    if supplied is not None and supplied.defense is not None:
        raise PurebenchError(
            "threat.surrogate rebuilds the defense from its registry name with other settings, which a defense "
            "handed over as an object cannot be: register it, or attack your own cheaper copy with threat=adaptive."
        )
    settings = {**group_params(cfg.defense), **threat.surrogate}
    return DEFENSES.build(cfg.defense.name, classifier=classifier, **settings).to(device)


def compile_backend(cfg: DictConfig) -> str | None:
    """The ``compile`` switch: false/null = eager, true = inductor, or a named torch.compile backend."""
    if cfg.compile is None or cfg.compile is False:
        return None
    return "inductor" if cfg.compile is True else str(cfg.compile)


def check_images(x: torch.Tensor, indices: Sequence[int]) -> None:
    if x.min() < 0 or x.max() > 1:
        raise PurebenchError(
            f"Images {indices[0]}..{indices[-1]} are outside [0, 1] (min {x.min():.3f}, max {x.max():.3f}). "
            "purebench expects unnormalised pixels; move normalisation into the classifier wrapper."
        )


@torch.no_grad()
def _predict(classifier: Classifier, x: torch.Tensor) -> torch.Tensor:
    return classifier(x).argmax(1)


def _predict_purified(
    classifier: Classifier, purified: torch.Tensor, source: torch.Tensor, source_pred: torch.Tensor
) -> torch.Tensor:
    """Predictions on purified images; a purifier that returned its input unchanged (the same tensor)
    reuses the input's predictions instead of paying another forward pass."""
    return source_pred if purified is source else _predict(classifier, purified)


def _purify(
    defense: Defense, name: str, x: torch.Tensor, seed: int, indices: Sequence[int], stream: str
) -> torch.Tensor:
    """Purify with per-example seeded randomness; no autograd graph is kept for evaluation."""
    with per_example(seed, indices, stream), torch.no_grad():
        return checks.checked_purify(defense, x, name)


def _purify_repeated(
    defense: Defense, name: str, x: torch.Tensor, seed: int, indices: Sequence[int], streams: Sequence[str],
    chunk: int | None,
) -> Iterator[torch.Tensor]:  # fmt: skip
    """The purifications of ``x`` under each of ``streams``, ``chunk`` of them stacked into one batch
    (None: :func:`draws_per_call`) and yielded stacked; every row draws from its own (example, stream)
    generator, so stacking changes no draw. No autograd graph is kept for evaluation."""
    draws = [generators(seed, indices, stream) for stream in streams]
    for stacked in stacked_draws(x, draws, draws_per_call(chunk, len(streams), x)):
        with torch.no_grad():
            purified = checks.checked_purify(defense, stacked, name)
        yield purified


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N): this run evaluates batches I, I+N, I+2N, ... of the full run."""
    if shard is None:
        return None
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise PurebenchError(f"shard must be 'I/N' with 0 <= I < N (e.g. shard=0/4), got '{shard}'.")
    return i, n


def check_shard_has_batches(shard: tuple[int, int] | None, n_examples: int, batch_size: int) -> None:
    """Refuse a shard that would get no batch: its row would have n=0 and NaN figures."""
    n_batches = -(-n_examples // batch_size)
    if shard is not None and shard[0] >= n_batches:
        raise PurebenchError(
            f"shard={shard[0]}/{shard[1]} gets no batch: n_examples={n_examples} with batch_size={batch_size} makes "
            f"{n_batches} batch(es), so at most {n_batches} shards have work. Use shard=I/N with N <= {n_batches}, or "
            "a smaller batch_size."
        )


def _evaluate_batch(
    dataset: EvalDataset,
    classifier: Classifier,
    defense: Defense,
    defense_name: str,
    attack: Attack,
    attacked: torch.nn.Module,
    batch: list[int],
    seed: int,
    n_eval: int,
    eot_batch: int | None,
    device: torch.device,
    first: bool,
    cache: ObliviousCache | None,
    stages: StageProgress,
    figure: tuple[Path, int, str] | None = None,  # where, how many images, the title naming the run
) -> dict[str, Any]:
    """Clean, SA, attack, adversarial and RA predictions of one batch (all randomness seeded by the batch)."""
    x, y = dataset.load(batch)
    check_images(x, batch)
    x, y = x.to(device), y.to(device)
    clean_pred = _predict(classifier, x)
    with stages.stage("SA purification", len(batch), "images") as tick:
        sa_pred = _predict_purified(
            classifier, _purify(defense, defense_name, x, seed, batch, "purify-clean"), x, clean_pred
        )
        tick(len(batch))
    seed_everything(derive_seed(seed, "attack", batch[0]))
    warnings = []
    if first:
        with attack_draws(seed, batch[: checks.N_CHECK], _adv_stream(0)):
            if blind := checks.zero_gradient_count(attacked, x, y):
                warnings.append(f"zero input gradient for {blind}/{min(len(batch), checks.N_CHECK)} checked images")
    x_adv = cache.get(batch, x, attack.norm, attack.eps) if cache is not None else None
    hit = x_adv is not None
    if hit:
        stages.note("attack answered from the oblivious cache (adversarial examples shared across defenses)")
    else:
        # a forward pass of the attacked model (classifier, purifier + classifier, EOT draws) is the attack's unit
        with stages.stage(f"attack {attack.name}", unit="forward passes") as tick:
            counter = attacked.register_forward_hook(lambda *_: tick(1))
            try:
                with attack_draws(seed, batch, _adv_stream(0)):  # read only by threat=known_draws
                    x_adv = attack(attacked, x, y)
            finally:
                counter.remove()
        if cache is not None:
            cache.put(batch, x_adv)
    warnings += [w for w in attack.describe().get("attack_warnings", "").split(" | ") if w and w not in warnings]
    adv_pred = _predict(classifier, x_adv)
    perturbed = (x_adv != x.to(x_adv.dtype)).flatten(1).any(1)  # an attack may hand back x itself where it gave up
    ra_hits = torch.zeros_like(y)
    votes = torch.zeros(len(y), classifier.num_classes, dtype=torch.long, device=y.device)
    # independent draws of the defense's randomness per evaluation (stream k), eot_batch of them per batch
    streams = [_adv_stream(k) for k in range(n_eval)]
    chunks = _purify_repeated(defense, defense_name, x_adv, seed, batch, streams, eot_batch)
    with (
        tqdm(total=n_eval, desc="purifications", unit="eval", leave=False, disable=stages.active or n_eval <= 1) as bar,
        stages.stage("RA purification", n_eval, "evaluations") as tick,
    ):
        for chunk, purified in enumerate(chunks):
            predictions = _predict_purified(classifier, purified, x_adv, adv_pred).split(len(batch))
            for ra_pred in predictions:
                ra_hits += (ra_pred == y).long()
                votes[torch.arange(len(y), device=y.device), ra_pred] += 1
            if chunk == 0 and first and figure is not None:
                path, n, title = figure[0], min(figure[1], len(batch)), figure[2]
                ra_pred = predictions[0]
                names = dataset.class_names
                labels = [
                    f"true: {names[int(y[i])]}\n{names[int(clean_pred[i])]} / {names[int(adv_pred[i])]} / "
                    f"{names[int(ra_pred[i])]}"
                    for i in range(n)
                ]
                purification_grid(x[:n], x_adv[:n], purified[:n], labels, path, title)
            bar.update(len(predictions))
            tick(len(predictions))
    # majority vote over the evaluations (Lee & Kim 2023): correct only when the label has strictly the most votes
    rivals = votes.scatter(1, y.view(-1, 1), -1).amax(1)
    vote_correct = votes.gather(1, y.view(-1, 1)).squeeze(1) > rivals
    examples = []
    for k, index in enumerate(batch):
        label = int(y[k])
        examples.append({
            "index": int(index), "label": label,
            "clean_correct": int(clean_pred[k] == label), "adv_correct": int(adv_pred[k] == label),
            "sa_correct": int(sa_pred[k] == label), "ra_hits": int(ra_hits[k]), "vote_correct": int(vote_correct[k]),
            "perturbed": int(perturbed[k]),
        })  # fmt: skip
    return {"examples": examples, "warnings": warnings, "cache_hit": hit}


CHANCE_MARGIN = 1.5  # clean accuracy up to 1.5x chance counts as "at chance" (10 classes: <= 15 %)


def chance_warning(clean_accuracy: float, classifier: Classifier) -> str | None:
    """A warning for the row when the undefended classifier is at chance on clean images: every
    figure of such a run measures an untrained or mismatched network, not a defense."""
    chance = 100 / classifier.num_classes
    if clean_accuracy > CHANCE_MARGIN * chance:
        return None
    return (
        f"undefended clean accuracy {clean_accuracy:.1f}% is at chance ({chance:.0f}% for {classifier.num_classes} "
        f"classes): classifier '{classifier.name}' is untrained or does not match the data"
    )


def _adv_stream(evaluation: int) -> str:
    """Seed stream of the k-th purification of an adversarial example (k=0 keeps the historic name)."""
    return "purify-adv" if evaluation == 0 else f"purify-adv-{evaluation}"


@dataclass
class Progress:
    """How far a run got, for the message when results_dir stops taking files."""

    results_dir: Path
    finished: int = 0  # batches stored in partial/ (computed or resumed)
    total: int = 0


WRITE_FAILURES = {errno.ENOSPC: "full", errno.EDQUOT: "over its quota", errno.EROFS: "read-only",
                  errno.EACCES: "no longer writable", errno.EPERM: "no longer writable"}  # fmt: skip


@contextlib.contextmanager
def storage_failures(progress: Progress) -> Iterator[None]:
    """Turn a write that fails mid-run (disk full, quota, results_dir made read-only) into one
    paragraph saying what was kept and that the same command resumes: every batch is stored
    atomically before the next starts, so only the batch in flight is lost. torch's zip writer
    reports a full disk as a RuntimeError ("unexpected pos"), without an errno."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        reason = WRITE_FAILURES.get(getattr(exc, "errno", None) or -1)
        if isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "PytorchStreamWriter" in str(exc)):
            reason = "full"
        elsewhere = reason in ("read-only", "no longer writable") and not _inside(exc.filename, progress.results_dir)
        if reason is None or elsewhere:
            raise
        raise PurebenchError(
            f"writing to results_dir '{progress.results_dir}' failed: the disk or folder is {reason} "
            f"({type(exc).__name__}: {exc}). {progress.finished} of {progress.total} batches had finished; they are "
            f"kept in {progress.results_dir / 'partial'} and nothing was added to the leaderboard. Free space or "
            "make the folder writable, then run the same command: it resumes from the finished batches."
        ) from exc


def _inside(filename: object, folder: Path) -> bool:
    return isinstance(filename, str | os.PathLike) and Path(filename).resolve().is_relative_to(folder.resolve())


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured evaluation; returns the leaderboard row (also written to ``results_dir``)."""
    return evaluate_run(cfg)["row"]


def evaluate_run(cfg: DictConfig, supplied: Supplied | None = None) -> dict[str, Any]:
    """Run the evaluation of ``cfg`` with any ``supplied`` components; returns the ``row`` and the
    ``run_file`` (config, per-example records, ...) that were written to ``results_dir`` (``skipped``: True
    when ``skip_finished`` found them there and wrote nothing)."""
    progress = Progress(Path(str(cfg.results_dir)))
    with storage_failures(progress):
        return _evaluate(cfg, progress, supplied)


def _evaluate(cfg: DictConfig, progress: Progress, supplied: Supplied | None) -> dict[str, Any]:
    start = time.perf_counter()
    settings = check_settings(cfg)
    shard = parse_shard(cfg.shard)
    check_shard_has_batches(shard, settings["n_examples"], settings["batch_size"])
    if settings["threads"] > 0:
        torch.set_num_threads(settings["threads"])
    keep_freed_memory()
    device = resolve_device(str(cfg.device), sweep_job_number())
    results_dir = progress.results_dir
    outputs = ["runs", "partial", "cache/adversarial"] + (["figures"] if settings["figures"] > 0 else [])
    check_writable([results_dir, *(results_dir / sub for sub in outputs)], "results_dir")
    check_leaderboard(results_dir / "leaderboard.csv")
    seed = settings["seed"]
    settle(cfg.defense, cfg.defense.get("checkpoint"))  # before hashing: rows record the purifier actually used
    checkpoints = record_checkpoints(cfg.defense)
    dataset, classifier, defense, attack, threat = build_components(cfg, device, supplied)
    indices = select_indices(dataset, settings["n_examples"], str(cfg.dataset.sample), seed)
    log.info("data: %s; evaluating %d images", dataset.source, len(indices))
    size = settings["batch_size"]
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    all_first = batches[0]
    x_first, _ = dataset.load(batches[0][: checks.N_CHECK])
    check_images(x_first, batches[0])
    detected = checks.purification_is_random(defense, x_first.to(device), str(cfg.defense.name))
    randomized = defense.randomized or detected
    overlap = training_overlap(cfg.defense, dataset.name, cfg.dataset.get("split"), indices)
    warnings = [overlap] if overlap else []  # a purifier evaluated on its own training images
    if detected and not defense.randomized:
        warnings.append(f"defense '{cfg.defense.name}' is random but does not declare it; treated as randomized")
    attacked = threat.attacked_model(
        classifier, attacker_copy(cfg, classifier, defense, threat, supplied, device), randomized
    )
    threat_info = threat.describe(randomized)
    n_eval = int(threat_info["threat_n_eval"])
    single_draw = threat_info["threat_eot_iter"] == 1 and int(attack.describe().get("attack_eot_iter", 1)) == 1
    if randomized and threat.gradient != "classifier" and single_draw and not threat.known_draws:
        warnings.append(f"randomized defense attacked without EOT under threat={threat.name} (one draw per gradient)")

    config = OmegaConf.to_container(cfg, resolve=True)
    images = {batch[0]: dataset.digest(batch) for batch in batches}  # the data by content, of every shard
    classifier_weights = weights_digest(classifier)
    chash = evaluation_hash(config, images, classifier_weights)
    commit = git_commit()
    shard_label = "" if shard is None else f"{shard[0]}/{shard[1]}"
    batches = batches[shard[0] :: shard[1]] if shard else batches  # whole batches: shards equal the full run
    version, computing = code_version(), compute_version()
    weights = "".join(f"-{digest[:8]}" for digest in checkpoints.values())  # a retrained file resumes nothing
    if (
        settings["skip_finished"]
        and (done := finished_row(results_dir, chash, shard_label, sha256_params(checkpoints))) is not None
    ):
        log.info(
            "skip_finished: the leaderboard holds this configuration as run %s; nothing recomputed", done["run_id"]
        )
        earlier = load_run_file(results_dir, done["run_id"])
        return {"row": earlier["row"], "run_file": earlier, "skipped": True}
    store = BatchStore(results_dir, f"{chash}-{computing}{weights}")
    finished_run = store.load_run(shard_label)
    if finished_run is not None:  # killed while publishing: publish the same row, do not add a second one
        log.info("resumed: run %s had finished; writing its results", finished_run["row"]["run_id"])
        _publish(results_dir, finished_run["row"], finished_run["run_file"], store, batches, shard_label)
        return finished_run
    cache = None
    if threat.gradient == "classifier":  # x_adv does not depend on the defense: share it across defenses
        cache_key = {
            "classifier": classifier.name, "weights": classifier_weights,
            "attack": group_params(cfg.attack, *NOT_DECISIVE["attack"]), "seed": seed,
            "numerics": {"amp": classifier.amp, "channels_last": classifier.channels_last,
                         "compile": classifier.compile_backend},
            "code": computing, "torch": torch.__version__,
        }  # fmt: skip
        cache = ObliviousCache(results_dir, cache_key, images)
    figure_path = results_dir / "figures" / f"{chash}.png"
    # the run in words; the config hash names the full settings (two checkpoints of one defense differ there)
    title = (
        f"{cfg.defense.name} under {cfg.attack.name}, threat={threat_info['threat_model']}, {attack.norm} "
        f"eps={attack.eps:.4g}, {dataset.name} (config {chash})"
    )
    figure = (figure_path, settings["figures"], title) if settings["figures"] > 0 else None
    per_example_rows: list[dict[str, int]] = []
    cache_hits = []
    reused = 0
    resumed_s = 0.0  # the compute time stored with resumed batches: wall_s is the cell's cost, not this process's
    progress.total = len(batches)
    stages = StageProgress(len(batches))  # log lines where the output is not a terminal, else tqdm's bars
    for number, batch in enumerate(
        tqdm(batches, desc=f"{cfg.defense.name} vs {cfg.attack.name}", unit="batch", disable=stages.active), 1
    ):
        record = store.load(batch)
        if record is None:
            remaining = sum(not store.has(later) for later in batches[number:])  # finished ones cost nothing
            batch_start = time.perf_counter()
            with stages.batch(number, batch[0], batch[-1], remaining):
                record = _evaluate_batch(
                    dataset, classifier, defense, str(cfg.defense.name), attack, attacked, batch, seed, n_eval,
                    threat.eot_batch, device, batch == all_first, cache, stages, figure,
                )  # fmt: skip
            store.save(batch, {**record, "wall_s": time.perf_counter() - batch_start})
        else:
            reused += 1
            resumed_s += record["wall_s"]  # every record carries it (the resume key follows the code)
        progress.finished += 1
        per_example_rows += record["examples"]
        cache_hits.append(record.get("cache_hit", False))
        warnings += [w for w in record["warnings"] if w not in warnings]
    if reused:
        log.info("resumed: %d of %d batches were already finished", reused, len(batches))
    warnings += [w for w in store.warnings + (cache.warnings if cache else []) if w not in warnings]

    figures = summarise(per_example_rows, n_eval)
    if (chance := chance_warning(figures["clean_acc_undefended"], classifier)) is not None:
        warnings.append(chance)
    finished = dt.datetime.now(dt.UTC)
    run_id = f"{finished:%Y%m%dT%H%M%S}-{chash[:8]}-{uuid.uuid4().hex[:6]}"
    attack_info = attack.describe()
    row = {
        "run_id": run_id,
        "dataset": dataset.name,
        "classifier": classifier.name,
        "defense": cfg.defense.name,
        "defense_params": ",".join(
            f"{k}={v}" for k, v in sorted({**group_params(cfg.defense), **sha256_params(checkpoints)}.items())
        ),
        "attack": cfg.attack.name,
        "threat_model": threat_info["threat_model"],
        "norm": attack.norm,
        "eps": attack.eps,
        "seed": seed,
        "shard": shard_label,
        **figures,
        "n_eval": n_eval,
        "attack_steps": attack_info.get("attack_steps", ""),
        "attack_params": attack_info.get("attack_params", ""),
        "attack_eot_iter": attack_info.get("attack_eot_iter", 1),
        "threat_eot_iter": threat_info["threat_eot_iter"],
        "threat_backprop_steps": threat_info.get("threat_backprop_steps", ""),
        "threat_surrogate": threat_info.get("threat_surrogate", ""),
        "protocol": settings["protocol"],
        "adv_cache": ("hit" if all(cache_hits) else "miss" if not any(cache_hits) else "partial") if cache else "",
        "defense_randomized": defense.randomized,
        "randomness_detected": detected,
        "wall_s": round(time.perf_counter() - start + resumed_s, 2),
        "config_hash": chash,
        "commit": commit,
        "version": version,
        "data_source": dataset.source,
        "warnings": " | ".join(warnings),
        "finished_at": finished.isoformat(timespec="seconds"),
    }
    run_file = {
        "row": row,
        "config": config,
        "attack": attack_info,
        "threat": threat_info,
        "defense_properties": defense.describe(),
        "checkpoint_sha256": checkpoints,
        "torch": torch.__version__,
        "device": str(device),
        "per_example": per_example_rows,
        "figure": str(figure_path.relative_to(results_dir)) if figure and figure_path.exists() else None,
    }
    store.save_run(shard_label, {"row": row, "run_file": run_file})
    _publish(results_dir, row, run_file, store, batches, shard_label)
    return {"row": row, "run_file": run_file}


def _publish(
    results_dir: Path,
    row: dict[str, Any],
    run_file: dict[str, Any],
    store: BatchStore,
    batches: list[list[int]],
    shard_label: str,
) -> None:
    """Write the run file and the leaderboard row, then drop the resume files. Every step can be
    repeated: a run killed in the middle of it is finished by the re-run with the same row."""
    write_json(results_dir / "runs" / f"{row['run_id']}.json", run_file)
    append_row(results_dir / "leaderboard.csv", row)
    store.discard(batches, shard_label)
    figure = run_file.get("figure")
    log_run(
        run_file["config"]["logger"], row, run_file["config"], results_dir / figure if figure else None, results_dir
    )
