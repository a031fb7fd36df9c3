"""The JavaScript each isolate runs: the workload's framed ABI, spoken to its ``.wasm`` through
V8's WebAssembly API, byte for byte as the Wasm host speaks it through wasmtime's C API.

Kept as a Python string, not a ``.js`` file: package data is globbed by suffix in
pyproject.toml, and a module ships in every wheel without an edit there.

Bytes cross mini-racer only as strings (Python to JS) and ArrayBuffers (JS to Python, read in
place). So the module travels once per isolate as a base64 literal inside the compile script
(decoded by ``Uint8Array.fromBase64``, V8's own decoder), and a request as a latin-1 string
(one code unit per byte, so NULs and bytes over 0x7f survive) copied into linear memory with
``charCodeAt``. The response comes back as a copy of its bytes in linear memory (an
ArrayBuffer), status byte first, or as a number saying which check refused it.
"""

from __future__ import annotations

#: What ``el_handle`` returns instead of an ArrayBuffer when a check fails; the host turns
#: each into the same line the Wasm host gives (``{cap}``: the response cap, as "16 MiB").
REFUSALS = {
    1: "edgelab_alloc returned a buffer outside linear memory",
    2: "edgelab_handle returned no response inside linear memory",
    3: "response exceeded {cap}",
}

#: Defines the glue. ``%(module_b64)s`` and ``%(cap)d`` are filled in once per workload by
#: the host; the script's value is ``el_handle`` (a function the host keeps per isolate).
#: Instances are kept in a Map by id: one per isolate on the ``isolate`` rung, many in the
#: warm isolate of ``isolate:context``.
SOURCE = r"""
function el_decode(text) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
  // V8 before 13.x has no fromBase64 (mini-racer 0.12 bundles 12.x): decode by hand.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const value = new Uint8Array(128);
  for (let i = 0; i < 64; i++) value[alphabet.charCodeAt(i)] = i;
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  for (let i = 0, o = 0; i < text.length; i += 4) {
    const n = (value[text.charCodeAt(i)] << 18) | (value[text.charCodeAt(i + 1)] << 12) |
      (value[text.charCodeAt(i + 2)] << 6) | value[text.charCodeAt(i + 3)];
    if (o < out.length) out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}
var el_module = new WebAssembly.Module(el_decode("%(module_b64)s"));
var el_instances = new Map();
var el_next_id = 0;
function el_new() {
  const instance = new WebAssembly.Instance(el_module, {});
  instance.exports._initialize();
  el_next_id += 1;
  el_instances.set(el_next_id, instance);
  return el_next_id;
}
function el_drop(id) {
  return el_instances.delete(id) ? 1 : 0;
}
function el_handle(id, request) {
  const e = el_instances.get(id).exports;
  const n = request.length;
  const at = e.edgelab_alloc(n) >>> 0;
  if (at !== 0) {
    if (at + n > e.memory.buffer.byteLength) return 1;
    const bytes = new Uint8Array(e.memory.buffer, at, n);
    for (let i = 0; i < n; i++) bytes[i] = request.charCodeAt(i);
  }
  const packed = BigInt.asUintN(64, e.edgelab_handle(at, n));
  const start = Number(packed >> 32n);
  const length = Number(packed & 0xffffffffn);
  const size = e.memory.buffer.byteLength;  // the memory may have grown
  if (length === 0 || start + length > size) return 2;
  if (length - 1 > %(cap)d) return 3;
  return e.memory.buffer.slice(start, start + length);
}
el_handle
"""


def script(module_b64: str, cap: int) -> str:
    """The compile script for one workload: its module inlined, its response cap."""
    return SOURCE % {"module_b64": module_b64, "cap": cap}
