"""PyTorch runner: the parity reference and the benchmark baseline (eager FP32; on a GPU FP16,
channels-last and CUDA graphs)."""

from __future__ import annotations

import copy
from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends.base import Backend, BenchVariant, Runner, RunnerOptions
from rsz_export.plan.profiles import Plan

NAME = "torch"
SUPPORTED_PRECISIONS = ("fp32", "fp16")


def unavailable_reason() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed: pip install torch torchvision"
    return None


def check_compatible(manifest: Manifest, engine: EngineRecord | None) -> str | None:
    """The reference has no engine file: it runs wherever torch does."""
    return unavailable_reason()


class TorchRunner(Runner):
    """Runs a ResNet-50 module; ``device`` "cpu" or "cuda"; ``half``, ``channels_last`` and ``cuda_graphs`` on GPU.

    With a ``plan`` it serves that plan's profiles (as an engine built for it would); without, any size.
    """

    def __init__(
        self,
        model,
        device: str = "cpu",
        half: bool = False,
        channels_last: bool = False,
        cuda_graphs: bool = False,
        plan: Plan | None = None,
    ):
        super().__init__(plan, range(len(plan.profiles)) if plan else ())
        if cuda_graphs and device != "cuda":
            raise ValueError("CUDA graphs need device='cuda'")
        self.model, self.device, self.half = model, device, half
        self.channels_last, self.cuda_graphs = channels_last, cuda_graphs
        parts = (
            ["fp16" if half else "fp32"]
            + (["channels-last"] if channels_last else [])
            + (["cuda-graphs"] if cuda_graphs else [])
        )
        self.name = f"torch:{device}:{'-'.join(parts)}"
        self._graphs: dict = {}

    def __enter__(self) -> TorchRunner:
        import torch

        model = self.model.to(self.device)
        model = model.half() if self.half else model.float()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        return self

    def __exit__(self, *exc) -> None:
        self._graphs.clear()

    def _prepare(self, images):
        import torch

        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        x = x.half() if self.half else x
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _graphed(self, x):
        import torch

        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):  # warm up on a side stream before capture, as CUDA graphs require
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _run(self, images, profile: int | None):
        return self._run_all(images, profile)[0]

    def _run_all(self, images, profile: int | None) -> list:
        import torch

        x = self._prepare(images)
        with torch.no_grad():
            out = self._graphed(x) if self.cuda_graphs else self.model(x)
        return [o.float().cpu().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def open_runner(manifest: Manifest, engine: EngineRecord | None = None, out_dir: Path | str = ".") -> TorchRunner:
    """The reference model rebuilt from the manifest's weights (sha256-verified), serving the manifest's plan."""
    from rsz_export.model.weights import reference_from_record

    return TorchRunner(reference_from_record(manifest.weights, out_dir, manifest.outputs), plan=manifest.plan)


class TorchReference(Backend):
    """The PyTorch reference: the build's weights in eager PyTorch, no engine file. What validate compares
    against, bench's baseline, and ``--backend torch`` for predict and serve."""

    name = NAME
    precisions = SUPPORTED_PRECISIONS
    builds = False
    shares_graph = True
    times_on_current_stream = True

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def check_compatible(self, manifest: Manifest, engine: EngineRecord | None) -> str | None:
        return check_compatible(manifest, engine)

    def open_runner(self, manifest, engine=None, out_dir=".", options: RunnerOptions | None = None) -> TorchRunner:
        """Uses no option: eager FP32 on the CPU, every plan profile served by one model (torch's threads are
        the process's, set by the caller)."""
        return open_runner(manifest, engine, out_dir)

    def device(self, manifest: Manifest) -> str:
        """CUDA beside engines that run only on a GPU, when one is visible; else the CPU."""
        import torch

        from rsz_export.backends import load_backend

        gpu_engines = any(load_backend(e.backend).gpu_only for e in manifest.engines)
        return "cuda" if gpu_engines and torch.cuda.is_available() else "cpu"

    def bench_variants(self, manifest: Manifest, out_dir, threads: int, device: str) -> list[BenchVariant]:
        """Eager FP32, and on a GPU also FP16 channels-last and CUDA graphs; each on its own copy of the model
        (TorchRunner converts its module in place)."""
        import torch

        from rsz_export.model.weights import reference_from_record

        torch.set_num_threads(threads)
        model = reference_from_record(manifest.weights, out_dir, manifest.outputs)
        modes = [("eager-fp32", {})]
        if device == "cuda":
            modes += [("fp16-channels-last", {"half": True, "channels_last": True}),
                      ("cuda-graphs", {"cuda_graphs": True})]
        return [(name, lambda _e, kw=kw: TorchRunner(copy.deepcopy(model), device=device, **kw)) for name, kw in modes]
