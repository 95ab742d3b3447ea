"""Runtime: facts about this process that every stage may use, and nothing that reads data.

`backends`: which Keras backend a command runs on, chosen before Keras is imported.
`devices`: the accelerators that backend sees, and the choices that follow from them.
`environment`: library versions, git commit and host, for run directories and result files.
`cpus`: the CPUs this process may use, and each trainer's share (the loader's readers).
`malloc`: glibc allocator settings for processes that cycle through large buffers.
`gpu_state`: each GPU's settings and its clocks, power and throttle reasons, through NVML.
`host_state`: the host CPU's settings, and the CPU time stolen from or taken by others.
"""
