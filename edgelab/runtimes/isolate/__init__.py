"""V8 isolates (mini-racer) as a runtime family: ``runtime`` (the lab's side), ``host`` (the
process the isolates live in), ``glue`` (the JavaScript speaking the workload's ABI). Nothing
here imports mini-racer at import time; only the host and ``check`` do."""
