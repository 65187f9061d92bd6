"""bench/run.py keeps one results table per CPU family: a name shared by several generations is split by the
instructions that set their speed (a virtual machine calls Zen 3 and Zen 4 both "AMD EPYC")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from run import cpu_family, docs_section  # noqa: E402

ZEN4 = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
ZEN3 = ["avx2"]
XEON_AMX = [*ZEN4, "amx_tile", "amx_bf16", "amx_int8"]


def test_each_generation_of_one_name_has_its_own_table():
    assert cpu_family("AMD EPYC", ZEN4) == "amd-epyc"  # the family's first tables were measured on Zen 4
    assert cpu_family("AMD EPYC", ZEN3) == "amd-epyc-avx2"
    assert cpu_family("AMD EPYC 9654 96-Core Processor", ZEN4) == "amd-epyc"
    assert cpu_family("Intel(R) Xeon(R) Processor", XEON_AMX) == "intel-xeon"
    assert cpu_family("Intel(R) Xeon(R) Processor", ["avx2", "avx512f"]) == "intel-xeon-avx512f"
    assert cpu_family("Apple M2", []) == "apple-m2"


def test_the_docs_block_and_heading_follow_the_family():
    assert docs_section("results", ["pfeiffer"], "AMD EPYC", "cpu", ZEN3) == (
        "results-amd-epyc-avx2", "## Training: AdapterLab against the reference, AMD EPYC with AVX2 only")
    assert docs_section("results", ["pfeiffer"], "AMD EPYC", "cpu", ZEN4)[0] == "results-amd-epyc"
    assert docs_section("results", ["ia3"], "Intel(R) Xeon(R) Processor", "cpu", ["avx2", "avx512f"]) == (
        "results-intel-xeon-avx512f", "## Training: AdapterLab against the reference, Intel Xeon with AVX-512, no bf16")
    assert docs_section("results-methods", ["lora", "prefix"], "AMD EPYC", "cuda", ZEN4) == (
        "results-methods-cuda", "## Training: AdapterLab against the reference (lora, prefix), cuda")
