"""edgelab: watch one workload start as a container, a native process and a Wasm instance."""

__version__ = "0.1.0"
