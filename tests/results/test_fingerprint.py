"""Fingerprints: which machine a result file measured, and how tables name it."""
from __future__ import annotations

import copy

from helpers import CPU, GPU, bench_result
from pipeline.results.fingerprint import fingerprint


def test_a_gpu_fingerprint_names_device_count_host_backend_and_precision():
    doc = bench_result({**GPU, "gpu_count": 8}, train=[(50, 32, [1.0] * 3)])
    machine = fingerprint(doc)
    assert machine.key == ("NVIDIA H100", 8, "Xeon", 16, "tensorflow", "2.21.0", "mixed_bfloat16")
    assert machine.label == "NVIDIA H100 x8 (Xeon 16c), tensorflow 2.21.0, mixed_bfloat16"
    assert machine.is_gpu


def test_a_cpu_fingerprint_is_its_model_and_usable_cores():
    doc = bench_result({**CPU, "cpu_model": "Intel(R) Xeon(R) Processor"}, train=[(50, 32, [1.0] * 3)])
    doc["environment"]["cpu"]["usable"] = 1  # an affinity mask or a quota leaves one of two cores
    machine = fingerprint(doc)
    assert machine.label == "Intel Xeon Processor 1c, tensorflow 2.21.0" and not machine.is_gpu


def test_precision_is_what_the_training_rows_ran_in_and_role_sets_the_id_apart():
    doc = bench_result(GPU, train=[(50, 32, [1.0] * 3)])
    float32 = copy.deepcopy(doc)
    for row in float32["rows"]:
        row["precision"] = "float32"
    assert fingerprint(float32).precision == "float32"  # a run without the device default's cells
    assert fingerprint(doc).precision == "mixed_bfloat16"
    assert fingerprint(doc, "yours").key == fingerprint(doc).key
    assert fingerprint(doc, "yours").id != fingerprint(doc).id
    assert fingerprint(bench_result(GPU)).precision == "mixed_bfloat16"  # no training rows: the device default
