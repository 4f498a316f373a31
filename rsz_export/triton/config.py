"""A build's manifest -> the models of a Triton model repository and their ``config.pbtxt``. Pure over the
manifest; Triton's own ``model_config_pb2`` (from ``tritonclient``) is imported only to render a config.

What each model is (each backend's ``Backend.triton_model`` says; today two backends have one):

* **TensorRT**: the engine file as ``model.plan``. Triton's TensorRT backend uses profile 0 only when an instance
  group lists no ``profile``; with every profile listed it picks, per request batch, a profile whose min..max
  holds the input. So every engine's instance group lists all of its (engine-local) profiles. An engine-per-
  profile build becomes one model per engine, ``NAME_p<k>`` for plan profile k, and clients route each input
  with the plan's rule (``routing.json`` in the repository).
* **ONNX Runtime**: the build's exported ONNX as ``model.onnx`` (standard operators, which any ONNX Runtime in
  a Triton release reads; the offline-optimised engine file holds fused operators meant for the ONNX Runtime
  that wrote it, and Triton's backend applies the same optimisations when it loads the model), with the
  manifest's thread settings.

Batching (``batching``): Triton batches requests (``max_batch_size`` N, per-request dims ``[3,-1,-1]``) when the
engine accepts every batch from 1 to N, i.e. the plan's batch starts at 1 and N > 1 (or ``--max-batch`` asks).
Otherwise the batch is part of the request: ``max_batch_size: 0`` and full dims ``[N,3,-1,-1]`` for a fixed batch
(min == max == N, the default 1) or ``[-1,3,-1,-1]`` for a range that does not start at 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsz_export.artifacts.manifest import EngineRecord, FileRecord, Manifest
from rsz_export.backends.base import TritonModel
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError, check_int
from rsz_export.interface import CHANNELS, INPUT_NAME, OUTPUT_NAME, SERVED_MODEL_NAME, feature_maps
from rsz_export.plan.profiles import ROUTING_RULE
from rsz_export.shapes import MAX_BATCH, BatchRange

SERVE_INSTALL = 'pip install -e ".[serve]"'
MAX_INSTANCES = 64
QUEUE_DELAY_US = 100
"""How long Triton's dynamic batcher holds a request for others of the same shape: short next to ResNet-50's
own latency, so a lone request barely waits."""
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # used with fullmatch: `$` also matches before a final \n


@dataclass(frozen=True)
class TritonOptions:
    """What ``rsz-export triton`` was asked for: the model name, Triton's batch limit, instances per model."""

    name: str = SERVED_MODEL_NAME
    max_batch: int | None = None
    instances: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise UsageError(
                f"--name {self.name!r} cannot name a Triton model: use 1..63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if self.max_batch is not None:
            check_int(self.max_batch, "--max-batch", 1, MAX_BATCH)
        check_int(self.instances, "--instances", 1, MAX_INSTANCES)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the repository, everything its config and its files need."""

    name: str
    engine: str
    platform: str
    """``platform`` of config.pbtxt (``Backend.triton_model``)."""
    backend: str
    """``backend`` of config.pbtxt: the Triton backend that loads the file."""
    source: FileRecord
    """The build folder's file served as ``target``, its sha256 checked before it is copied."""
    target: str
    plan_profiles: tuple[int, ...]
    max_batch_size: int
    input_dims: tuple[int, ...]
    output_dims: tuple[int, ...]
    """The first output's dims (``logits``); ``outputs`` has every output with its dims."""
    preferred_batch_sizes: tuple[int, ...]
    kind: str
    instances: int
    trt_profiles: tuple[str, ...]
    parameters: tuple[tuple[str, str], ...] = ()
    runtime_version: str | None = None
    """The runtime version the served file needs exactly (TensorRT plans), None when any loads it."""
    extra: tuple[tuple[FileRecord, str], ...] = ()
    """Further build files the model needs, each with its name in the version folder (OpenVINO's weights)."""
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Every output (name, dims): ``logits``, or each feature map of a backbone (its sides dynamic: -1)."""


def model_threads(spec: ModelSpec) -> int:
    """The CPU threads one instance of the model uses, from its parameters (0: the backend decides)."""
    parameters = dict(spec.parameters)
    return int(parameters.get("intra_op_thread_count") or parameters.get("INFERENCE_NUM_THREADS") or 0)


def batching(batch: BatchRange, requested: int | None, engine_bound: bool) -> tuple[int, int | None]:
    """(max_batch_size, the request's batch dim or None when Triton batches) for the plan's ``batch``.
    ``engine_bound``: the engine runs only the plan's batches (TensorRT), not any batch (ONNX Runtime)."""
    if requested is not None:
        if engine_bound and batch.min > 1:
            raise UsageError(f"--max-batch: the engines take batches of {batch.min}..{batch.max} only, so Triton "
                             "cannot batch single requests for them; leave --max-batch out")
        limit = batch.max if engine_bound else MAX_BATCH
        if requested > limit:
            raise UsageError(f"--max-batch {requested} is above the engines' largest batch {limit}",
                             hint=f"give at most {limit}, or rebuild with --batch 1-{requested}")
        return requested, None
    if batch.min == 1 and batch.max > 1:
        return batch.max, None
    return 0, (batch.max if batch.min == batch.max else -1)


def tensor_dims(manifest: Manifest, requested: int | None, engine_bound: bool) -> tuple[int, tuple, tuple]:
    """(max_batch_size, dims of ``images``, dims of ``logits``) as Triton describes a build's model: without
    Triton's batch dimension when it batches, with the request's batch dimension otherwise (``batching``)."""
    max_batch_size, input_dims, outputs = tensor_layout(manifest, requested, engine_bound)
    return max_batch_size, input_dims, outputs[0][1]


def tensor_layout(manifest: Manifest, requested: int | None, engine_bound: bool) -> tuple[int, tuple, tuple]:
    """(max_batch_size, dims of ``images``, every output's (name, dims)), by ``tensor_dims``'s batch rule: a
    classifier's ``logits`` [classes], a backbone's feature maps [channels, -1, -1] (their sides follow the
    input's)."""
    max_batch_size, batch_dim = batching(manifest.plan.batch, requested, engine_bound)
    prefix = () if batch_dim is None else (batch_dim,)
    maps = feature_maps(manifest.outputs)
    outputs = tuple((name, (*prefix, channels, -1, -1)) for name, channels, _ in maps) if maps else (
        (OUTPUT_NAME, (*prefix, manifest.num_classes)),)
    return max_batch_size, (*prefix, CHANNELS, -1, -1), outputs


def preferred_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes Triton's dynamic batcher aims for: powers of two up to the limit, and the limit."""
    sizes = {max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def _served_engines(manifest: Manifest) -> tuple[tuple[EngineRecord, TritonModel], ...]:
    """Each engine of the build's backend with how Triton serves it; IntegrityError when Triton cannot."""
    from rsz_export.backends import load_backend

    backend = load_backend(manifest.backend)
    served = tuple((e, backend.triton_model(manifest, e)) for e in backend.engines_of(manifest))
    if not served or any(model is None for _, model in served):
        raise IntegrityError(
            f"the manifest lists no engine Triton serves (backend {manifest.backend!r})",
            hint="build one first: rsz-export build DIR --min MIN --max MAX",
        )
    return served


def _model(
    manifest: Manifest, engine: EngineRecord, served: TritonModel, name: str, options: TritonOptions
) -> ModelSpec:
    max_batch_size, input_dims, outputs = tensor_layout(manifest, options.max_batch, served.engine_bound)
    return ModelSpec(
        name=name,
        engine=engine.name,
        platform=served.platform,
        backend=served.backend,
        source=served.served,
        target=served.file_name,
        plan_profiles=engine.profiles,
        max_batch_size=max_batch_size,
        input_dims=input_dims,
        output_dims=outputs[0][1],
        outputs=outputs,
        preferred_batch_sizes=preferred_sizes(max_batch_size) if max_batch_size else (),
        kind=served.kind,
        instances=options.instances,
        trt_profiles=served.profiles,
        parameters=served.parameters,
        runtime_version=served.runtime_version,
        extra=served.extra_files,
    )


def plan_models(manifest: Manifest, options: TritonOptions) -> tuple[ModelSpec, ...]:
    """The repository's models: one per engine, named ``NAME`` for a single engine, else ``NAME_p<k>`` after the
    first plan profile k it serves."""
    served = _served_engines(manifest)
    if len(served) == 1:
        return (_model(manifest, *served[0], options.name, options),)
    return tuple(_model(manifest, e, model, f"{options.name}_p{e.profiles[0]}", options) for e, model in served)


def routing(manifest: Manifest, models: tuple[ModelSpec, ...]) -> dict:
    """``routing.json``: every model's plan profiles with their ranges, and the rule that picks one per input."""
    plan = manifest.plan
    entries = []
    for model in models:
        for index in model.plan_profiles:
            profile = plan.profiles[index]
            entries.append({
                "model": model.name, "plan_profile": index,
                "min": {"batch": profile.min.batch, "h": profile.min.h, "w": profile.min.w},
                "max": {"batch": profile.max.batch, "h": profile.max.h, "w": profile.max.w},
                "max_area": profile.max_pixels,
            })
    return {
        "rule": ROUTING_RULE,
        "how": "among the entries whose min..max holds the input's batch, height and width, take the one with the "
        "smallest max_area (ties: the lower plan_profile) and send the input to its model",
        "single_model": len(models) == 1,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME if manifest.has_classes else list(manifest.output_names),
        "profiles": entries,
    }


def tritonclient_config():
    """Triton's ``ModelConfig`` message class and protobuf's ``text_format``; exit 3 when tritonclient is absent."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise EnvironmentProblem(
            "writing a Triton model repository needs tritonclient (for Triton's model_config schema), which is "
            "not installed",
            hint=f"install the serving extra: {SERVE_INSTALL}",
        ) from None
    return model_config_pb2, text_format


def model_config(spec: ModelSpec):
    """The model's ``ModelConfig`` message (``tritonclient.grpc.model_config_pb2``)."""
    pb, _ = tritonclient_config()
    config = pb.ModelConfig(
        name=spec.name,
        platform=spec.platform,
        backend=spec.backend,
        max_batch_size=spec.max_batch_size,
        input=[pb.ModelInput(name=INPUT_NAME, data_type=pb.TYPE_FP32, dims=spec.input_dims)],
        output=[pb.ModelOutput(name=name, data_type=pb.TYPE_FP32, dims=dims)
                for name, dims in spec.outputs or ((OUTPUT_NAME, spec.output_dims),)],
        instance_group=[
            pb.ModelInstanceGroup(
                kind=pb.ModelInstanceGroup.Kind.Value(spec.kind), count=spec.instances, profile=spec.trt_profiles
            )
        ],
    )
    if spec.max_batch_size:
        config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    for key, value in spec.parameters:
        config.parameters[key].string_value = value
    return config


def config_text(spec: ModelSpec) -> str:
    """``config.pbtxt`` for ``spec``, checked by parsing it back into a ``ModelConfig`` equal to the one written."""
    pb, text_format = tritonclient_config()
    config = model_config(spec)
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())
    if parsed != config:  # a bug here, never the user's input: keep the traceback
        raise AssertionError(f"config.pbtxt for {spec.name} does not parse back to the config written")
    return text
