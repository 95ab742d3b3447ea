"""Which accelerator the Keras backend sees, and the choices that follow from it.

Everything here falls back to the CPU when no GPU is present; results record
`describe()` so tables from GPU machines and CPU machines can be merged. Under the
JAX backend nothing here imports TensorFlow (it need not be installed).
"""
from __future__ import annotations

import platform

from pipeline.runtime.cpus import usable_cpus

# Keras dtype policies: variables stay float32 in all three; "mixed_" ones compute in 16 bits
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _tf():
    import tensorflow as tf  # imported lazily: `generate` and `report` never need TensorFlow

    return tf


def backend() -> str:
    """The Keras backend of this process: "tensorflow" or "jax" (importing Keras fixes it)."""
    import keras

    return keras.backend.backend()


def gpus() -> list:
    """GPUs the backend can use (empty on CPU-only machines): TensorFlow physical devices or JAX devices."""
    if backend() == "jax":
        import jax

        return [d for d in jax.devices() if d.platform == "gpu"]
    return _tf().config.list_physical_devices("GPU")


def has_gpu() -> bool:
    return bool(gpus())


def compute_device() -> str:
    """TensorFlow logical device the model runs on: '/GPU:0' when TensorFlow sees a GPU, else '/CPU:0'."""
    return "/GPU:0" if _tf().config.list_physical_devices("GPU") else "/CPU:0"


def capability(gpu) -> tuple[int, ...]:
    """Compute capability of one of `gpus()`, e.g. (9, 0); () where the device does not say."""
    if backend() == "jax":
        text = getattr(gpu, "compute_capability", None) or ""
        return tuple(int(part) for part in str(text).split(".") if part.isdigit())
    return tuple(_tf().config.experimental.get_device_details(gpu).get("compute_capability") or ())


def add_precision_argument(p) -> None:
    """`--precision`, for the commands that build or run a model (argparse parser `p`)."""
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="Keras dtype policy (variables stay float32); default: mixed_bfloat16 on GPUs of compute "
                        "capability >= 8.0, mixed_float16 (with loss scaling) on 7.x, float32 elsewhere")


def default_precision() -> str:
    """The Keras dtype policy models train in here, one of PRECISIONS.

    mixed_bfloat16 where every GPU has compute capability >= 8.0 (bfloat16 tensor cores, and
    float32's exponent range, so no loss scaling); mixed_float16 where they are 7.x (tensor cores
    for float16 only; trained with loss scaling); float32 on CPUs and older GPUs.
    """
    capabilities = [capability(gpu) for gpu in gpus()]
    if not capabilities or min(capabilities) < (7, 0):
        return "float32"
    return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "mixed_float16"


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
    """Device facts for result files: kind, name, Keras backend and its version, and GPU
    memory/driver/CUDA/cuDNN where present (CUDA/cuDNN: TensorFlow's build, None under JAX).

    `name` is what tables group rows by, e.g. 'NVIDIA A100-SXM4-40GB' or 'CPU: AMD EPYC 7B13 (2 cores)'.
    """
    name = backend()
    cores = usable_cpus()
    info = {"kind": "cpu", "name": f"CPU: {cpu_model()} ({cores} cores)", "cpu_model": cpu_model(),
            "cpu_cores": cores, "backend": name, "backend_version": None,
            "cuda_build": None, "cudnn_build": None}
    found = gpus()
    if name == "jax":
        import jax

        info["backend_version"] = jax.__version__
        gpu_name = found[0].device_kind if found else None
    else:
        tf = _tf()
        build = tf.sysconfig.get_build_info()
        info.update(backend_version=tf.__version__, cuda_build=build.get("cuda_version"),
                    cudnn_build=build.get("cudnn_version"))
        gpu_name = tf.config.experimental.get_device_details(found[0]).get("device_name", "GPU") if found else None
    if found:
        info.update(kind="gpu", name=gpu_name, gpu_count=len(found),
                    compute_capability=".".join(map(str, capability(found[0]))),
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
