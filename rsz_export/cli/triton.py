"""``rsz-export triton``: a Triton model repository (and a KServe InferenceService) from a build."""

from __future__ import annotations

import click

from rsz_export.cli.common import console, handles_errors
from rsz_export.cli.options import engines_dir_argument
from rsz_export.interface import SERVED_MODEL_NAME


def _next_steps(result) -> str:
    repo = result.path
    if result.tensorrt_version:
        release = f"<yy.mm>: a Triton release that ships TensorRT {result.tensorrt_version} (docs/serving.md)"
        gpus = "--gpus=all "
    else:
        release, gpus = "<yy.mm>: any recent Triton release", ""
    lines = [
        f"serve it with Triton ({release}):",
        f"  docker run {gpus}--rm -p8000:8000 -p8001:8001 -v {repo}:/models \\",
        "    nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
        f"or with KServe: upload {repo}, then kubectl apply -f {repo / 'kserve.yaml'}",
    ]
    if len(result.models) > 1:
        lines.append(f"one model per engine: clients pick one per input with {repo / 'routing.json'}")
    return "\n".join(lines)


def _table(result) -> str:
    rows = [f"{'model':<20} {'engine':<26} {'profiles':<12} {'max_batch_size':>14}  instances"]
    for m in result.models:
        profiles = ",".join(map(str, m.plan_profiles))
        rows.append(f"{m.name:<20} {m.engine:<26} {profiles:<12} {m.max_batch_size:>14}  {m.instances} {m.kind}")
    return "\n".join([f"Triton model repository: {result.path}", *rows])


@click.command()
@engines_dir_argument
@click.option("--repo", "repo", required=True, type=click.Path(), help="Where to write the model repository.")
@click.option("--name", default=SERVED_MODEL_NAME, show_default=True,
              help="Model name (engine-per-profile builds: NAME_p<k> for plan profile k).")
@click.option("--max-batch", type=int,
              help="Triton's max_batch_size. Default: the plan's batch max when its batch starts at 1 (else the "
              "batch is part of each request and Triton does not batch).")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (per GPU for TensorRT).")
@click.option("--kserve-storage-uri", "storage_uri",
              help="Where the repository will be uploaded (s3://, gs://, pvc://...), for kserve.yaml.")
@click.option("--force", is_flag=True, help="Replace an existing repository written by this command.")
@handles_errors
def triton(engines_dir, repo, name, max_batch, instances, storage_uri, force) -> None:
    """Write a Triton model repository from the build in DIR (default ./engines).

    TensorRT builds: the engine as model.plan, with every optimization profile listed for Triton; one model per
    engine for --engine-per-profile builds (routing.json says which to call). ONNX Runtime builds: the exported
    ONNX as model.onnx with the build's thread settings. Also kserve.yaml (KServe InferenceService) and
    rsz-export.json (the hashes of the build and of every file). Written atomically: on any failure PATH is
    left as it was. Exit codes: 0 ok, 2 usage, 3 tritonclient missing, 4 missing or tampered build file,
    5 PATH exists (without --force) or cannot be written, 130 interrupted.
    """
    from rsz_export.triton.config import TritonOptions
    from rsz_export.triton.repository import write_repository

    out = console()
    options = TritonOptions(name=name, max_batch=max_batch, instances=instances)
    result = write_repository(engines_dir, repo, options, storage_uri=storage_uri, force=force, log=out.info)
    click.echo(_table(result))
    if result.placeholder_uri:
        out.warn("kserve.yaml has a placeholder storageUri: give --kserve-storage-uri, or edit it")
    out.info(_next_steps(result))


COMMANDS = (triton,)
