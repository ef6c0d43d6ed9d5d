"""Runs a render's Python dynamic providers for real, the way `pulumi up` drives them, against a kept state.

The offline render stands in placeholders for what dynamic providers compute. Tests and benches that need
the real thing (nvflare's kits) pass `DynamicUp.synthesizers(...)` to OfflineMocks: each dynamic resource
the program registers is unpickled from its `__provider` input (as the engine's Python plugin does) and
created, or diffed against the kept state and updated or replaced. Renders with the same `DynamicUp` are
successive `pulumi up`s of one stack; `written` says which resources' state the last one rewrote.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import dill  # type: ignore[import-untyped]
from pulumi.runtime import mocks

from tools.mock_runtime import Synthesizer, plain

PROVIDER_KEY = "__provider"


@dataclass
class DynamicUp:
    state: dict[str, dict[str, Any]] = field(default_factory=dict)  # logical name -> stored outputs
    written: dict[str, int] = field(default_factory=dict)  # logical name -> bytes of state it wrote
    provider_seconds: float = 0.0  # CPU time inside the providers (create, diff, update) during the last up

    def synthesizers(self, *types: str) -> dict[str, Synthesizer]:
        return dict.fromkeys(types, self._up)

    def next_up(self) -> None:
        """Starts another `pulumi up` against the kept state."""
        self.written, self.provider_seconds = {}, 0.0

    def _up(self, args: mocks.MockResourceArgs) -> dict[str, Any]:
        news = plain(args.inputs, reveal=True)
        provider = dill.loads(base64.b64decode(news[PROVIDER_KEY]))
        olds = self.state.get(args.name)
        start = time.thread_time()  # the providers run in this thread; the SDK's other threads are not theirs
        if olds is None:
            outs = provider.create(news).outs or {}
        else:
            diff = provider.diff(args.name, olds, news)
            if diff.replaces:
                outs = provider.create(news).outs or {}
            elif diff.changes:
                outs = provider.update(args.name, olds, news).outs or {}
            else:
                outs = None
        self.provider_seconds += time.thread_time() - start
        if outs is None:
            return {k: v for k, v in olds.items() if k != PROVIDER_KEY}  # type: ignore[union-attr]
        self.state[args.name] = {**outs, PROVIDER_KEY: news[PROVIDER_KEY]}
        self.written[args.name] = len(json.dumps(self.state[args.name]))
        return outs
