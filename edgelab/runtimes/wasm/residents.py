"""The resident instances of one Wasm host, in flat arrays: no Python object per instance.

A ramp holds up to 50,000 instances per host; as Python objects (a dict entry, a tuple, two
ints and a ctypes buffer each) they cost ~600 bytes apiece, as records here ~160.
"""

from __future__ import annotations

import ctypes
from array import array
from typing import Any

from edgelab.runtimes.wasm.capi import EXTERN_BYTES, INSTANCE_BYTES

#: Per instance: the instance handle, then the four exports (_initialize, edgelab_alloc,
#: edgelab_handle, memory), as the hot path and the host's ctypes path fill them.
SLOT_BYTES = INSTANCE_BYTES + 4 * EXTERN_BYTES
_SLOT_BYTES = SLOT_BYTES


#: Resident instances' slots (instance handle + exports) are records in arenas of this many,
#: so that an instance costs the host ~160 bytes of bookkeeping, not ~600 of Python objects
#: (a dict entry, a tuple, two ints and a ctypes buffer each).
ARENA_SLOTS = 4096
#: An instance id is its record's index plus its generation there shifted by this, so an id
#: of a dropped instance never names the instance that reuses its record.
_GENERATION_SHIFT = 32


class Residents:
    """The resident instances of a host, in flat arrays: record index -> Store pointer, module
    number and generation; the slot records in arenas. No Python object per instance.

    With ``per_store`` > 1, up to that many instances (of one module) share a Store: each
    still has its own linear memory, globals and tables and the memory limit applies to
    each memory, but a Store is freed only with the last of its instances.
    """

    def __init__(self, per_store: int = 1) -> None:
        self.per_store = per_store
        #: Store -> its live instances, only where Stores are shared.
        self.refs: dict[int, int] = {}
        self._open_store = 0
        self._open_module = -1
        self._open_made = 0
        self.stores = array("Q")
        self.modules = array("H")
        self.generations = array("I")
        self.free: list[int] = []
        self.count = 0
        self._arenas: list[Any] = []
        self._arena_base: list[int] = []

    def slot_address(self, index: int) -> int:
        return self._arena_base[index // ARENA_SLOTS] + (index % ARENA_SLOTS) * _SLOT_BYTES

    def reserve(self) -> int:
        """A free record's index (its slot is where the next instance is made)."""
        if self.free:
            return self.free[-1]
        index = len(self.stores)
        if index // ARENA_SLOTS == len(self._arenas):
            arena = ctypes.create_string_buffer(ARENA_SLOTS * _SLOT_BYTES)
            self._arenas.append(arena)
            self._arena_base.append(ctypes.addressof(arena))
        return index

    def store_to_share(self, module: int) -> int:
        """The Store the next instance of ``module`` goes into (0: a fresh one)."""
        if self.per_store > 1 and self._open_store and self._open_module == module:
            return self._open_store
        return 0

    def made(self, store: int, module: int, reused: bool) -> None:
        """Note one instantiation (kept or failed) into ``store``."""
        if self.per_store == 1 or not store:
            return
        if not reused:
            self._open_store, self._open_module, self._open_made = store, module, 0
        self._open_made += 1
        if self._open_made >= self.per_store:
            self._open_store = 0

    def add(self, index: int, store: int, module: int) -> int:
        """Record the instance made in ``reserve()``'s slot; returns its id."""
        if self.per_store > 1:
            self.refs[store] = self.refs.get(store, 0) + 1
        if self.free and self.free[-1] == index:
            self.free.pop()
            self.stores[index] = store
            self.modules[index] = module
            self.generations[index] += 1
        else:
            self.stores.append(store)
            self.modules.append(module)
            self.generations.append(0)
        self.count += 1
        return self.generations[index] << _GENERATION_SHIFT | index

    def find(self, instance_id: int) -> int | None:
        """The record index of a live instance id, else None."""
        index = instance_id & ((1 << _GENERATION_SHIFT) - 1)
        if index >= len(self.stores) or not self.stores[index]:
            return None
        if self.generations[index] != instance_id >> _GENERATION_SHIFT:
            return None
        return index

    def remove(self, index: int) -> int:
        """Forget record ``index``; returns the Store pointer for the caller to delete, or 0
        while other instances still live in that Store."""
        store = self.stores[index]
        self.stores[index] = 0
        self.free.append(index)
        self.count -= 1
        if self.per_store == 1:
            return store
        left = self.refs[store] - 1
        if left:
            self.refs[store] = left
            return 0
        del self.refs[store]
        if store == self._open_store:
            self._open_store = 0
        return store

    def live(self) -> list[int]:
        return [i for i, store in enumerate(self.stores) if store]
