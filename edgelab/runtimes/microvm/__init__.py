"""The microvm family: QEMU microvm guests whose init is the workload (see ``runtime``)."""

from edgelab.runtimes.microvm.runtime import MicrovmInstance, MicrovmRuntime

__all__ = ["MicrovmInstance", "MicrovmRuntime"]
