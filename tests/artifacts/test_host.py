"""Host facts: cores, CPU flags, driver version parsing."""

from __future__ import annotations

from rsz_export.artifacts.host import host_info, parse_cpu_flags, parse_driver_version, usable_cpus


def test_usable_cpus_is_what_the_host_record_says():
    assert 1 <= usable_cpus() == host_info()["cpu_count"]


def test_cpu_flags_parsing():
    cpuinfo = "processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_vnni amx_int8 sse4_2\nbugs\t\t: avx512_bf16\n"
    assert parse_cpu_flags(cpuinfo) == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"]
    assert parse_cpu_flags("") == []


def test_driver_version_parsing():
    proc = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    assert parse_driver_version(proc) == "550.54.14"
    assert parse_driver_version("535.183.01\n") == "535.183.01"
    assert parse_driver_version("NVIDIA-SMI has failed") is None
