"""``kserve.yaml``: a KServe InferenceService that serves a Triton model repository with KServe's Triton runtime.
Pure text (no YAML library is a dependency): every value written is checked or quoted here."""

from __future__ import annotations

import re

from rsz_export.errors import UsageError

PLACEHOLDER_URI = "s3://YOUR-BUCKET/path/to/repository"
_URI_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s\"'\\]+$")


def check_storage_uri(uri: str) -> str:
    """``uri`` when it looks like a storage URI KServe downloads from (``s3://``, ``gs://``, ``pvc://``,
    ``https://``...), else a UsageError."""
    if not isinstance(uri, str) or not _URI_RE.match(uri):
        raise UsageError(
            f"--kserve-storage-uri {uri!r} is not a storage URI",
            hint="give where the repository folder is uploaded, e.g. s3://bucket/models/resnet50-repo or "
            "pvc://claim/models (no spaces or quotes)",
        )
    return uri


def service_name(model_name: str) -> str:
    """A Kubernetes name (lower-case letters, digits and '-', starting with a letter) for an InferenceService."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:63].rstrip("-")
    return name or "rsz-export"


def _resources(gpu: bool, cpu_threads: int) -> list[str]:
    if gpu:
        return ["        requests:", '          cpu: "2"', "          memory: 4Gi",
                "        limits:", '          nvidia.com/gpu: "1"', "          memory: 8Gi"]
    cpus = f'"{max(1, cpu_threads)}"'
    return ["        requests:", f"          cpu: {cpus}", "          memory: 2Gi",
            "        limits:", f"          cpu: {cpus}", "          memory: 4Gi"]


def inference_service(
    model_name: str, storage_uri: str | None, gpu: bool, cpu_threads: int = 1, tensorrt_version: str | None = None
) -> str:
    """The InferenceService text: the repository at ``storage_uri`` (a placeholder when None) served by KServe's
    Triton runtime over the v2 protocol, on one GPU for TensorRT engines or on ``cpu_threads`` cores."""
    uri = PLACEHOLDER_URI if storage_uri is None else check_storage_uri(storage_uri)
    lines = [
        "# A KServe InferenceService serving this Triton model repository with KServe's Triton runtime.",
        "# Upload the repository folder, then: kubectl apply -f kserve.yaml",
        "apiVersion: serving.kserve.io/v1beta1",
        "kind: InferenceService",
        "metadata:",
        f"  name: {service_name(model_name)}",
        "spec:",
        "  predictor:",
        "    model:",
        "      modelFormat:",
        "        name: triton",
        "      protocolVersion: v2",
    ]
    if storage_uri is None:
        lines.append("      # placeholder: where the repository is uploaded (rsz-export triton --kserve-storage-uri)")
    lines.append(f'      storageUri: "{uri}"')
    if tensorrt_version:
        lines.append(f"      # TensorRT plans run only on the TensorRT that built them ({tensorrt_version}): pin the")
        lines.append("      # Triton release that ships it (docs/serving.md), e.g. runtimeVersion: \"YY.MM-py3\"")
    lines.append("      resources:")
    lines.extend(_resources(gpu, cpu_threads))
    return "\n".join(lines) + "\n"
