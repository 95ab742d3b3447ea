"""Which machine a result file measured: its fingerprint, the key `compare` puts a row per.

A fingerprint is the device model and count, the host CPU model and the cores the run could use,
the Keras backend and its version, and the precision its training cells ran in. Files of one
fingerprint (a machine's several runs, each of some suites) merge into one machine; the newest file
wins a cell measured twice.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.results.headline import default_precision


@dataclass(frozen=True)
class Machine:
    """A fingerprint; `role` "yours" or "reference"; `id` 8 hex digits of both, `label` how tables name it."""

    device: str
    device_count: int
    host_cpu: str
    cores: int | None
    backend: str
    backend_version: str
    precision: str
    role: str = "reference"

    @property
    def key(self) -> tuple:
        return (self.device, self.device_count, self.host_cpu, self.cores, self.backend, self.backend_version,
                self.precision)

    @property
    def id(self) -> str:
        return hashlib.sha256(repr((*self.key, self.role)).encode()).hexdigest()[:8]

    @property
    def is_gpu(self) -> bool:
        return not self.device.startswith("CPU")

    @property
    def label(self) -> str:
        """'AMD EPYC 2c, tensorflow 2.21.0', 'NVIDIA H100 80GB HBM3 x8 (Xeon 8480 16c), jax 0.10.0, mixed_bfloat16'."""
        cpu = f"{self.host_cpu} {self.cores}c" if self.cores else self.host_cpu
        device = f"{self.device}{f' x{self.device_count}' if self.device_count > 1 else ''} ({cpu})" if self.is_gpu \
            else cpu
        precision = "" if self.precision == "float32" else f", {self.precision}"
        return f"{device}, {self.backend} {self.backend_version}{precision}"


def _cpu_model(text: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon Processor': the marks only widen a column."""
    return " ".join(text.replace("(R)", "").replace("(TM)", "").replace("CPU ", "").split())


def fingerprint(doc: dict, role: str = "reference") -> Machine:
    """The machine a result document measured."""
    env = doc.get("environment") or {}
    device = env.get("device") or {}
    cpu = env.get("cpu") or {}
    backend = (doc.get("config") or {}).get("backend") or (env.get("backend") or {}).get("name") or "tensorflow"
    version = (env.get("backend") or {}).get("version") or (env.get("versions") or {}).get(backend) or "?"
    precisions = {r.get("precision") for r in doc.get("rows", []) if r.get("suite") == "train" and r.get("precision")}
    precision = default_precision(device)
    if precisions and precision not in precisions:
        precision = sorted(precisions)[0]
    name = device.get("name") or "?"
    model = _cpu_model(cpu.get("model") or device.get("cpu_model") or "?")
    return Machine(device=name if device.get("kind") == "gpu" else f"CPU: {model}",
                   device_count=int(device.get("gpu_count") or 1), host_cpu=model,
                   cores=cpu.get("usable") or cpu.get("cores") or device.get("cpu_cores"), backend=backend,
                   backend_version=str(version), precision=precision, role=role)
