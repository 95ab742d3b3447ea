"""Which accelerator TensorFlow sees, and the choices that follow from it.

Everything here falls back to the CPU when no GPU is present; results record
`describe()` so tables from GPU machines and CPU machines can be merged.
"""
from __future__ import annotations

import os
import platform


def _tf():
    import tensorflow as tf  # imported lazily: `generate` and `report` never need TensorFlow

    return tf


def gpus() -> list:
    """Physical GPUs TensorFlow can use (empty on CPU-only machines)."""
    return _tf().config.list_physical_devices("GPU")


def has_gpu() -> bool:
    return bool(gpus())


def compute_device() -> str:
    """Logical device the model runs on: '/GPU:0' when present, else '/CPU:0'."""
    return "/GPU:0" if has_gpu() else "/CPU:0"


def default_mixed_precision() -> bool:
    """Mixed float16 pays off on GPUs with tensor cores (compute capability >= 7.0); never on CPU."""
    tf = _tf()
    for gpu in gpus():
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (7, 0):
            return True
    return False


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """Device facts for result files: kind, name, and GPU memory/driver/CUDA/cuDNN where present.

    `name` is what tables group rows by, e.g. 'NVIDIA A100-SXM4-40GB' or 'CPU: AMD EPYC 7B13 (2 cores)'.
    """
    tf = _tf()
    build = tf.sysconfig.get_build_info()
    info = {"kind": "cpu", "name": f"CPU: {cpu_model()} ({os.cpu_count()} cores)", "cpu_model": cpu_model(),
            "cpu_cores": os.cpu_count(), "cuda_build": build.get("cuda_version"), "cudnn_build": build.get("cudnn_version")}
    found = gpus()
    if found:
        details = [tf.config.experimental.get_device_details(g) for g in found]
        info.update(kind="gpu", name=details[0].get("device_name", "GPU"), gpu_count=len(found),
                    compute_capability=".".join(map(str, details[0].get("compute_capability", ()))),
                    gpu_memory_mb=_nvidia_smi("memory.total"), driver=_nvidia_smi("driver_version"))
    return info


def _nvidia_smi(field: str) -> str | None:
    """One field of the first GPU from nvidia-smi, or None where it is not installed."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.splitlines()[0].strip() if out else None
    except (OSError, subprocess.SubprocessError):
        return None
